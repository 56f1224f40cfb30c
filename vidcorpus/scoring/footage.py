"""Near-duplicate footage across videos: a perceptual signature per video and the groups it gives.

The signature is a dHash sequence: one 64-bit difference hash of the upright working-resolution
luma per `step_s` of video, taken in the single decode pass (no extra reading). Difference hashes
survive re-encoding, rescaling, mild crops and colour shifts; hashing the upright picture makes a
copy whose frames were rotated (and flagged for display) hash like its source. Flat frames
(black, white, one colour) carry no information and are left out, so two videos do not match on
their black intros.

Two videos are near-duplicates when most sampled frames of the shorter one have a close hash
(Hamming distance at most `max_bits`) in the other at one common time offset: a re-encode
matches its frames at offset 0, an excerpt at the point it was cut from. Requiring one offset
(and not any frame anywhere) keeps unrelated videos of similar-looking content apart. Only candidate pairs are compared: videos that share an exact 16-bit
quarter of some hash (a copy has many close hashes, and close hashes mostly share a quarter), so
a large corpus is not compared all pairs against all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

FLAT_STD = 4.0  # luma standard deviation under which a frame is flat (no hash)
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def dhash(luma: np.ndarray, rotation: int = 0) -> int:
    """64-bit difference hash of an 8-bit luma picture after a clockwise `rotation`; 0 when flat."""
    if float(luma.std()) < FLAT_STD:
        return 0
    if rotation % 360:
        luma = np.rot90(luma, k=-(rotation % 360) // 90)
    small = cv2.resize(np.ascontiguousarray(luma), (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


class FootageSignature:
    """Collects one dHash per `step_s` of a frame stream (the first frame of each slot)."""

    def __init__(self, step_s: float = 1.0):
        self.step_s = step_s
        self._next_t = 0.0
        self.hashes: list[int] = []

    def offer(self, t: float, luma: np.ndarray, rotation: int = 0) -> None:
        if t + 1e-9 < self._next_t:
            return
        self.hashes.append(dhash(luma, rotation))
        self._next_t = (int(t / self.step_s + 1e-9) + 1) * self.step_s

    def to_record(self) -> dict:
        """The signature as staged with a video's result: step and hashes as one hex string."""
        return {"step_s": self.step_s, "hashes": "".join(f"{h:016x}" for h in self.hashes)}


def hashes_of(record: Mapping | None) -> np.ndarray:
    """The hash sequence of a staged signature record, flat frames as 0."""
    text = (record or {}).get("hashes") or ""
    return np.array([int(text[i:i + 16], 16) for i in range(0, len(text), 16)], np.uint64)


def _close(a: np.ndarray, b: np.ndarray, max_bits: int) -> np.ndarray:
    """(len(a), len(b)) booleans: hashes within `max_bits` bits of each other, flat ones never."""
    xor = np.bitwise_xor(a[:, None], b[None, :])
    bits = _POPCOUNT[xor.view(np.uint8)].reshape(xor.shape + (8,)).sum(axis=2)
    return (bits <= max_bits) & (a[:, None] != 0) & (b[None, :] != 0)


def matched_share(a: np.ndarray, b: np.ndarray, max_bits: int = 12, slack: int = 1) -> float:
    """Share of `a`'s informative hashes matched by `b` at one time offset (the best): `a` shown
    inside `b` from some point on, each sample within `slack` samples of where it should be."""
    informative = int((a != 0).sum())
    if not informative or not len(b):
        return 0.0
    close = _close(a, b, max_bits)
    if slack:  # a match one sample early or late still counts (slot boundaries jitter)
        widened = close.copy()
        widened[:, 1:] |= close[:, :-1]
        widened[:, :-1] |= close[:, 1:]
        close = widened
    n, m = close.shape
    best = max(int(np.trace(close, offset=k)) for k in range(-(n - 1), m))
    return best / informative


def _bands(value: int) -> list[tuple[int, int]]:
    return [(i, (value >> (16 * i)) & 0xFFFF) for i in range(4)]


def candidate_pairs(signatures: Mapping[str, np.ndarray]) -> set[tuple[str, str]]:
    """Video pairs that share at least one 16-bit band of some hash (sorted ids, each pair once)."""
    owners: dict[tuple[int, int], set[str]] = defaultdict(set)
    for video_id, hashes in signatures.items():
        for value in set(int(h) for h in hashes if h):
            for band in _bands(value):
                owners[band].add(video_id)
    pairs = set()
    for videos in owners.values():
        ordered = sorted(videos)
        pairs.update((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:])
    return pairs


@dataclass(frozen=True)
class FootageMatch:
    video_id: str
    dup_of: str | None   # the group's representative (the longest video, then the smallest id); None for it
    overlap_s: float     # seconds of this video's footage found in another video of the group
    group: str           # the representative's id, shared by every member


def group_footage(entries: Iterable[Mapping], min_share: float = 0.5, max_bits: int = 12,
                  min_hashes: int = 3) -> dict[str, FootageMatch]:
    """Near-duplicate groups of a corpus from `{"video_id", "duration_s", "signature"}` entries.

    Returns a match for every video in a group of two or more (the representative too, with
    `dup_of` None and overlap 0); videos without near-duplicates are absent.
    """
    entries = {e["video_id"]: e for e in entries}
    signatures = {v: hashes_of(e.get("signature")) for v, e in entries.items()}
    signatures = {v: h for v, h in signatures.items() if int((h != 0).sum()) >= min_hashes}
    step = {v: float((entries[v].get("signature") or {}).get("step_s") or 1.0) for v in signatures}
    parent = {v: v for v in signatures}

    def root(v: str) -> str:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    overlap: dict[str, float] = defaultdict(float)
    for a, b in sorted(candidate_pairs(signatures)):
        short, other = (a, b) if len(signatures[a]) <= len(signatures[b]) else (b, a)
        share = matched_share(signatures[short], signatures[other], max_bits)
        if share >= min_share:
            parent[root(a)] = root(b)
            seconds = share * int((signatures[short] != 0).sum()) * step[short]
            overlap[short] = max(overlap[short], seconds)
            overlap[other] = max(overlap[other], seconds)
    members: dict[str, list[str]] = defaultdict(list)
    for v in signatures:
        members[root(v)].append(v)
    matches = {}
    for group in members.values():
        if len(group) < 2:
            continue
        head = representative(group, entries)
        for v in group:
            matches[v] = FootageMatch(v, None if v == head else head, 0.0 if v == head else round(overlap[v], 3), head)
    return matches


def representative(group: Sequence[str], entries: Mapping[str, Mapping]) -> str:
    """The member the others are copies of: the longest, then the smallest id."""
    return min(group, key=lambda v: (-float(entries[v].get("duration_s") or 0.0), v))
