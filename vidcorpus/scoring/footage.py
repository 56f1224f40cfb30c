"""Near-duplicate footage across videos: a perceptual signature per video and the groups it gives.

The signature is a dHash sequence: one 256-bit difference hash of the upright working-resolution
luma per `step_s` of video, taken in the single decode pass (no extra reading). Difference hashes
survive re-encoding, rescaling, mild crops and colour shifts; hashing the upright picture makes a
copy whose frames were rotated (and flagged for display) hash like its source. Flat frames
(black, white, one colour) carry no information and are left out, so two videos do not match on
their black intros.

Two videos are near-duplicates when most sampled frames of the shorter one have a close hash
(Hamming distance at most `max_bits`, a quarter of the bits; unrelated pictures differ in about
half) in the other at one common time offset: a re-encode matches its frames at offset 0, an
excerpt at the point it was cut from. Requiring one offset (and not any frame anywhere) keeps
unrelated videos of similar-looking content apart, and at least `min_hashes` of the matches
must show different pictures (colour bars held for ten seconds once matched a slide held as long). Nearly flat frames (a counter on a plain
ground, a fade) are left out like flat ones. Only candidate pairs are compared: videos that share an exact 16-bit
slice of some hash (a copy has many close hashes, and close hashes mostly share a slice), so
a large corpus is not compared all pairs against all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

FLAT_STD = 4.0  # luma standard deviation under which a frame is flat (no hash)
HASH_SIDE = 16  # a HASH_SIDE x HASH_SIDE difference hash: 256 bits, 32 bytes
HASH_BYTES = HASH_SIDE * HASH_SIDE // 8
MIN_BITS_SET = HASH_SIDE * HASH_SIDE // 8  # fewer set (or unset) bits: too little picture to tell apart
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def dhash(luma: np.ndarray, rotation: int = 0) -> bytes:
    """Difference hash (HASH_SIDE² bits) of an 8-bit luma picture after a clockwise `rotation`;
    all zero bytes when the picture is flat."""
    if float(luma.std()) < FLAT_STD:
        return bytes(HASH_BYTES)
    if rotation % 360:
        luma = np.rot90(luma, k=-(rotation % 360) // 90)
    small = cv2.resize(np.ascontiguousarray(luma), (HASH_SIDE + 1, HASH_SIDE), interpolation=cv2.INTER_AREA)
    bits = (small.astype(np.int16)[:, 1:] > small[:, :-1]).flatten()
    if not MIN_BITS_SET <= int(bits.sum()) <= bits.size - MIN_BITS_SET:
        return bytes(HASH_BYTES)  # nearly flat: a few edges on an even ground match anything alike
    return np.packbits(bits).tobytes()


class FootageSignature:
    """Collects one dHash per `step_s` of a frame stream (the first frame of each slot)."""

    def __init__(self, step_s: float = 1.0):
        self.step_s = step_s
        self._next_t = 0.0
        self.hashes: list[bytes] = []

    def offer(self, t: float, luma: np.ndarray, rotation: int = 0) -> None:
        if t + 1e-9 < self._next_t:
            return
        self.hashes.append(dhash(luma, rotation))
        self._next_t = (int(t / self.step_s + 1e-9) + 1) * self.step_s

    def to_record(self) -> dict:
        """The signature as staged with a video's result: step and hashes as one hex string."""
        return {"step_s": self.step_s, "hashes": b"".join(self.hashes).hex()}


def hashes_of(record: Mapping | None) -> np.ndarray:
    """The hash sequence of a staged signature record, (samples, HASH_BYTES) bytes; flat frames are 0."""
    data = bytes.fromhex((record or {}).get("hashes") or "")
    return np.frombuffer(data, np.uint8).reshape(-1, HASH_BYTES)


def informative(hashes: np.ndarray) -> np.ndarray:
    """Which samples carry a hash (not a flat frame)."""
    return hashes.any(axis=1)


def _close(a: np.ndarray, b: np.ndarray, max_bits: int, chunk: int = 64) -> np.ndarray:
    """(len(a), len(b)) booleans: hashes within `max_bits` bits of each other, flat ones never."""
    close = np.zeros((len(a), len(b)), bool)
    for start in range(0, len(a), chunk):
        xor = np.bitwise_xor(a[start:start + chunk, None, :], b[None, :, :])
        close[start:start + chunk] = _POPCOUNT[xor].sum(axis=2, dtype=np.int32) <= max_bits
    return close & informative(a)[:, None] & informative(b)[None, :]


def match_evidence(a: np.ndarray, b: np.ndarray, max_bits: int = 64, slack: int = 1) -> tuple[float, int]:
    """(share, distinct): the share of `a`'s informative hashes matched by `b` at one time offset
    (the best: `a` shown inside `b` from some point on, each sample within `slack` samples of
    where it should be), and how many of those matches show different pictures (a still frame
    held for ten seconds is one piece of evidence, not ten)."""
    count = int(informative(a).sum())
    if not count or not len(b):
        return 0.0, 0
    close = _close(a, b, max_bits)
    if slack:  # a match one sample early or late still counts (slot boundaries jitter)
        widened = close.copy()
        widened[:, 1:] |= close[:, :-1]
        widened[:, :-1] |= close[:, 1:]
        close = widened
    n, m = close.shape
    offset = max(range(-(n - 1), m), key=lambda k: (int(np.trace(close, offset=k)), -abs(k)))
    rows = [i for i in range(n) if 0 <= i + offset < m and close[i, i + offset]]
    distinct, last = 0, None
    for i in rows:
        if last is None or int(_POPCOUNT[a[i] ^ last].sum()) > max_bits // 2:
            distinct, last = distinct + 1, a[i]
    return len(rows) / count, distinct


def matched_share(a: np.ndarray, b: np.ndarray, max_bits: int = 64, slack: int = 1) -> float:
    """The share of `match_evidence`."""
    return match_evidence(a, b, max_bits, slack)[0]


def _bands(row: np.ndarray) -> list[tuple[int, bytes]]:
    return [(i, row[i:i + 2].tobytes()) for i in range(0, HASH_BYTES, 2)]


def candidate_pairs(signatures: Mapping[str, np.ndarray]) -> set[tuple[str, str]]:
    """Video pairs that share at least one 16-bit band of some hash (sorted ids, each pair once)."""
    owners: dict[tuple[int, int], set[str]] = defaultdict(set)
    for video_id, hashes in signatures.items():
        for row in hashes[informative(hashes)]:
            for band in _bands(row):
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


def group_footage(entries: Iterable[Mapping], min_share: float = 0.5, max_bits: int = 64,
                  min_hashes: int = 3) -> dict[str, FootageMatch]:
    """Near-duplicate groups of a corpus from `{"video_id", "duration_s", "signature"}` entries.

    Returns a match for every video in a group of two or more (the representative too, with
    `dup_of` None and overlap 0); videos without near-duplicates are absent.
    """
    entries = {e["video_id"]: e for e in entries}
    signatures = {v: hashes_of(e.get("signature")) for v, e in entries.items()}
    signatures = {v: h for v, h in signatures.items() if int(informative(h).sum()) >= min_hashes}
    step = {v: float((entries[v].get("signature") or {}).get("step_s") or 1.0) for v in signatures}
    parent = {v: v for v in signatures}

    def root(v: str) -> str:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    overlap: dict[str, float] = defaultdict(float)
    for a, b in sorted(candidate_pairs(signatures)):
        short, other = (a, b) if (len(signatures[a]), a) <= (len(signatures[b]), b) else (b, a)
        share, distinct = match_evidence(signatures[short], signatures[other], max_bits)
        if share >= min_share and distinct >= min_hashes:
            parent[root(a)] = root(b)
            seconds = min(share * int(informative(signatures[short]).sum()) * step[short],
                          float(entries[short].get("duration_s") or 0.0) or float("inf"))
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
