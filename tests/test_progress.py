"""Progress bars on attribute and lint: the scorer's forward passes, on stderr, only when asked
(the command line asks when stderr is a terminal), as fix and bench show trials and steps."""

from __future__ import annotations

import io
import json
import sys

import pytest

from promptlens import progress
from tests.test_scorer import tiny_lm  # noqa: F401 (a fixture: a random two-layer Llama)


def test_the_bar_counts_the_trie_scorers_forward_passes(tiny_lm, monkeypatch):
    from promptlens.prefix import TrieScorer

    scorer = TrieScorer(tiny_lm, max_batch_tokens=6)
    seqs = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 9, 8], [7, 6, 5, 4, 3, 2, 1], [1, 2, 11, 12]]
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress.bar("attribute", True) as shown:
        scorer.score(seqs, [2, 2, 3, 1])
        first = scorer.forward_passes
        scorer.score(seqs[:2], [1, 1])  # a second call adds its passes to the total
        assert shown.n == shown.total == scorer.forward_passes > first > 1
    assert "attribute" in err.getvalue() and "pass" in err.getvalue()
    with progress.bar("attribute", False) as shown:  # off: nothing drawn, nothing counted
        assert shown is None
        scorer.score(seqs, [2, 2, 3, 1])
    progress.planned(3)  # outside a bar: nothing to do
    progress.advance()


@pytest.mark.parametrize("tty", [True, False])
def test_attribute_and_lint_show_a_bar_on_a_terminal_only(tmp_path, monkeypatch, capsys, tty):
    import promptlens.backends.hf as hf
    import promptlens.cli.common as common
    from promptlens.cli import main
    from tests.rule_backend import RuleBackend

    class Reporting(RuleBackend):  # a fake that reports its one pass per call, as the scorers do
        def token_logprobs(self, prompts, targets):
            progress.planned(1)
            out = super().token_logprobs(prompts, targets)
            progress.advance()
            return out

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("Is it plausible or implausible?\nStatement: {input}\nAnswer with one word.\n")
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(
        {"vars": {"input": f"s {i}"}, "target": "plausible", "choices": ["plausible", "implausible"]}) + "\n"
        for i in range(4)))
    monkeypatch.setattr(common, "make_backend", lambda args: Reporting())
    monkeypatch.setattr(hf, "load_backend", lambda *a, **k: Reporting())
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert main(["attribute", "t.txt", "--cases", "c.jsonl"]) == 0
    err = capsys.readouterr().err
    assert ("attribute: " in err and "pass" in err) == tty, err
    assert main(["lint", "t.txt", "--cases", "c.jsonl", "--no-cache"]) in (0, 1)
    err = capsys.readouterr().err
    assert ("lint t.txt: " in err and "pass" in err) == tty, err
