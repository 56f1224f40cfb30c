"""Tasks made by code, with answers known by construction, and their SFT/RL export.

- `niah`: needle-in-a-haystack probes (rendered text, foreign clip, several needles)
- `ordering`: shuffled clips of one video to put back in order
- `grounding`: "when does <event> happen?" from captions and evidence-backed QA
- `render`: probes written as MP4 (or kept as edit lists in reference mode)
- `export`: rows of the `sft` and `rl` tables; `checks`: what those rows must satisfy beyond types
- `rewards`: the reward rules a trainer imports (standard library only)
- `build`: all of a video's tasks in one call

Nothing is imported here, so `vidcorpus.tasks.rewards` stays importable on its own.
"""
