"""The reward rules of `vidcorpus.tasks.rewards` with TRL's reward-function signature.

TRL's GRPO trainer calls each reward function with the batch's `prompts` and `completions`
and every other dataset column as a keyword list; a `trl-grpo` export carries `ground_truth`
and `reward_rule`, so

    from vidcorpus.tasks.trl_rewards import task_reward
    GRPOTrainer(model, reward_funcs=[task_reward], train_dataset=dataset, ...)

scores each completion with its own row's rule. Completions come as text (standard format) or
as a list of messages (conversational); the last message's text is scored. Standard library
only, like the rules themselves.
"""

from __future__ import annotations

from typing import Any, Sequence

from vidcorpus.tasks.rewards import score


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion:
        content = completion[-1].get("content") if isinstance(completion[-1], dict) else completion[-1]
        if isinstance(content, (list, tuple)):
            return "\n".join(part.get("text") or "" for part in content
                             if isinstance(part, dict) and part.get("type") == "text")
        return "" if content is None else str(content)
    return ""


def task_reward(completions: Sequence[Any], ground_truth: Sequence[str], reward_rule: Sequence[str],
                **kwargs: Any) -> list[float]:
    """One reward in [0, 1] per completion, under its row's rule and ground truth."""
    return [score(rule, completion_text(completion), truth)
            for completion, truth, rule in zip(completions, ground_truth, reward_rule)]
