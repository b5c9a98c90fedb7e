"""GGUF side of the export on the tiny model: real converter, real llama.cpp."""

import numpy as np
import pytest

from kit import models
from kit.scoring.llamacpp import LlamaCppScorer
from kit.stages import export


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_model_dir):
    """Base and merged GGUFs of the tiny model plus its LoRA adapter as a GGUF adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-export")
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    # init_lora_weights=False: random A and B, so the adapter changes the outputs from the first step.
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(20)  # large enough that the adapter visibly moves the logits
    peft_model.save_pretrained(out / "adapter")
    resolved = models.resolve(str(tiny_model_dir))
    merged = export.merge(resolved, out / "adapter", out / "merged", resolved.chat_format.jinja_template())
    (out / "base").mkdir()
    base_gguf = export.convert(tiny_model_dir, out / "base", "f16")
    merged_gguf = export.convert(merged, out, "f16")
    lora_gguf = export.lora_to_gguf(out / "adapter", base_gguf, out / "adapter-f16.gguf")
    return base_gguf, merged_gguf, lora_gguf


def _last_logits(gguf_path, prompt, lora=None):
    import llama_cpp

    scorer = LlamaCppScorer(gguf_path, n_ctx=128, lora_path=lora)
    llm = scorer.llm
    llm.reset()
    llm.eval(llm.tokenize(prompt.encode(), add_bos=True, special=True))
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()


def test_gguf_lora_adapter_on_the_base_answers_like_the_merged_model(tiny_export):
    import gguf

    base_gguf, merged_gguf, lora_gguf = tiny_export
    fields = gguf.GGUFReader(str(lora_gguf)).fields  # small file: no vocabulary in an adapter
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    prompt = "<start_of_turn>user\nMy claim was refused<end_of_turn>\n<start_of_turn>model\n"
    merged = _last_logits(merged_gguf, prompt)
    with_adapter = _last_logits(base_gguf, prompt, lora=lora_gguf)
    plain = _last_logits(base_gguf, prompt)
    assert np.abs(merged - plain).max() > 0.5  # the adapter matters ...
    assert np.abs(merged - with_adapter).max() < 0.05 * np.abs(merged - plain).max()  # ... and the GGUF adapter applies it
    assert int(merged.argmax()) == int(with_adapter.argmax())


def test_gguf_metadata_holds_the_chat_template(tiny_export):
    from kit.models.chat import GEMMA

    _, merged_gguf, _ = tiny_export
    assert export.gguf_metadata(merged_gguf)["tokenizer.chat_template"] == GEMMA.jinja_template()


def test_adapter_with_dora_is_refused(tmp_path, tiny_export):
    import json
    import shutil

    base_gguf, _, _ = tiny_export
    src = base_gguf.parent.parent / "adapter"
    shutil.copytree(src, tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    cfg["use_dora"] = True
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(export.ExportError, match="use_dora"):
        export.lora_to_gguf(tmp_path / "adapter", base_gguf, tmp_path / "x.gguf")


def test_extra_buffers_are_off_on_amx_cpus_and_the_setting_can_force_them(monkeypatch):
    from kit.models import llamacpp

    monkeypatch.delenv(llamacpp.ENV_EXTRA_BUFFERS, raising=False)
    allowed, reason = llamacpp.extra_buffers(frozenset({"avx512f", "amx_tile", "amx_int8"}))
    assert allowed is False and "AMX" in reason and "20824" in reason
    assert llamacpp.extra_buffers(frozenset({"avx2"}))[0] is True
    monkeypatch.setenv(llamacpp.ENV_EXTRA_BUFFERS, "0")
    assert llamacpp.extra_buffers(frozenset({"avx2"})) == (False, f"set by {llamacpp.ENV_EXTRA_BUFFERS}=0")
    monkeypatch.setenv(llamacpp.ENV_EXTRA_BUFFERS, "1")
    assert llamacpp.extra_buffers(frozenset({"amx_int8"}))[0] is True


PROMPT = "<start_of_turn>user\nMy claim was refused<end_of_turn>\n<start_of_turn>model\n"


def last_logits(gguf, setting: str):
    """Next-token logits after PROMPT, with llama.cpp's extra buffer types forced on ("1") or off ("0")."""
    import os

    import llama_cpp

    from kit.models import llamacpp

    os.environ[llamacpp.ENV_EXTRA_BUFFERS] = setting
    llm = llamacpp.load(gguf, n_ctx=128)
    assert bool(llm.model_params.use_extra_bufts) is (setting == "1")
    llm.eval(llm.tokenize(PROMPT.encode(), add_bos=True, special=True))
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
    llm.close()
    return logits


def test_plain_cpu_buffers_answer_like_the_default_ones(tmp_path, tiny_model_dir):
    """The AMX-safe load (use_extra_bufts off) on a q8_0 GGUF, as in the export, gives the logits of the default load
    and of the unquantized f16 GGUF. Each load runs in a child process: with the extra buffers forced on, an AMX CPU
    hits the upstream crash this setting exists for (llama.cpp#20824), which must come back as a clear error."""
    from kit import hardware
    from kit.models import llamacpp

    q8 = export.convert(tiny_model_dir, tmp_path, "q8_0")
    f16 = export.convert(tiny_model_dir, tmp_path, "f16")
    plain = llamacpp.isolated(last_logits, q8, "0", what="scoring q8_0 with plain buffers", gguf=q8)
    reference = llamacpp.isolated(last_logits, f16, "0", what="scoring f16", gguf=f16)
    assert np.allclose(plain, reference, atol=0.05) and plain.argmax() == reference.argmax()
    try:
        default = llamacpp.isolated(last_logits, q8, "1", what="scoring q8_0 with extra buffers", gguf=q8)
    except llamacpp.LlamaCppError as crash:
        assert hardware.has_amx(), f"llama.cpp crashed with its default buffers on a CPU without AMX: {crash}"
        assert "crashed with SIG" in str(crash) and "KIT_LLAMA_EXTRA_BUFFERS=0" in str(crash)
    else:
        assert np.allclose(plain, default, atol=1e-3)


def test_a_file_llama_cpp_cannot_load_is_a_clear_error(tmp_path):
    from kit.models import llamacpp

    broken = tmp_path / "model-q8_0.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(llamacpp.LlamaCppError, match="could not load .*model-q8_0.gguf.*re-run the export"):
        llamacpp.load(broken)


def crash_in_llama_cpp(*args, **kwargs):
    """A real native fault inside libllama: reading logits from a context that does not exist."""
    import llama_cpp

    llama_cpp.llama_get_logits_ith(None, -1)


def test_isolated_returns_results_and_raises_python_errors_as_they_were():
    from kit.models import llamacpp

    assert llamacpp.isolated(sorted, [3, 1, 2], what="sorting", gguf="x.gguf") == [1, 2, 3]
    with pytest.raises(ValueError, match="invalid literal"):
        llamacpp.isolated(int, "abc", what="parsing", gguf="x.gguf")


def test_a_native_crash_in_llama_cpp_becomes_an_error_naming_library_file_and_fix():
    from kit.models import llamacpp

    with pytest.raises(llamacpp.LlamaCppError) as err:
        llamacpp.isolated(crash_in_llama_cpp, what="checking parity of q8_0", gguf="/runs/x/model-q8_0.gguf")
    msg = str(err.value)
    assert "llama.cpp (llama-cpp-python" in msg and "crashed with SIGSEGV" in msg
    assert "checking parity of q8_0 /runs/x/model-q8_0.gguf" in msg and "KIT_LLAMA_EXTRA_BUFFERS=0" in msg
    assert "crash_in_llama_cpp" in msg  # the Python stack of the crash, from the child's log


def test_ollama_hint_only_on_amx_cpus():
    assert export.ollama_cpu_hint(frozenset({"avx2"})) == ""
    hint = export.ollama_cpu_hint(frozenset({"amx_int8", "amx_tile"}))
    assert "libggml-cpu-sapphirerapids.so" in hint and "ollama serve" in hint


def test_labels_sharing_a_first_token_are_scored_whole_in_llama_cpp_as_in_transformers(tiny_export, tiny_model_dir,
                                                                                         tokenizer):
    """The routing set's intents `checkbalance` / `checkoffereligibility` start alike: parity must still run, with
    the same whole-label rule `evaluate.score_labels` applies."""
    import torch
    from transformers import AutoModelForCausalLM

    from kit.stages import evaluate

    _, merged_gguf, _ = tiny_export
    labels = ["checkbalance", "checkoffereligibility", "replacecard", "reportlostcard"]
    assert evaluate.label_first_tokens(tokenizer, labels) is None
    scorer = LlamaCppScorer(merged_gguf, n_ctx=256)
    prompts = [f"<start_of_turn>user\nTicket {t}<end_of_turn>\n<start_of_turn>model\n" for t in ("one", "two")]
    model = AutoModelForCausalLM.from_pretrained(merged_gguf.parent / "merged", dtype=torch.float32)
    hf = evaluate.score_labels(model, tokenizer, prompts, labels, batch_size=2, progress=False)
    served = scorer.score(prompts, labels)
    assert served.shape == hf.shape and np.allclose(served.sum(1), 1)
    assert np.abs(served - hf).max() < 0.02, (served, hf)  # f16 in llama.cpp vs float32 in transformers
    assert (served.argmax(1) == hf.argmax(1)).all()
    # The labels ran as one tree per prompt; walked one opening at a time they score the same, and the tree left the
    # prompt's cache as it found it (scoring again, or after first-token labels, changes nothing).
    walked = LlamaCppScorer(merged_gguf, n_ctx=256, trees=False).score(prompts, labels)
    assert np.abs(served - walked).max() < 1e-3, (served, walked)
    chunked = LlamaCppScorer(merged_gguf, n_ctx=256)
    for size in (1, 2):  # the tree decoded a node or two at a time: ancestors always come first
        chunked.tree_batch = size
        assert np.abs(chunked.score(prompts, labels) - served).max() < 1e-3
    chunked.max_tree_labels = 3  # more labels than the tree may hold: walked, the same scores
    assert np.abs(chunked.score(prompts, labels) - walked).max() < 1e-6
    first_token_labels = ["replacecard", "reportlostcard"]
    alone = LlamaCppScorer(merged_gguf, n_ctx=256).score(prompts, first_token_labels)
    assert np.allclose(scorer.score(prompts, first_token_labels), alone, atol=1e-6)
    assert np.allclose(scorer.score(prompts, labels), served, atol=1e-6)


def test_label_tree_lists_each_opening_once_breadth_first_with_its_labels_and_what_follows():
    from kit.scoring.llamacpp import label_tree

    # "card" is a prefix of "card_x"; "pin" is one token and needs no node; labels are sequences 1, 2, 3, 4
    tree = label_tree([(5, 7), (5, 7, 9), (5, 8), (6,)])
    assert tree == [((5,), [1, 2, 3], [7, 8]), ((5, 7), [2], [9])]



def _one_at_a_time(gguf_path, prompts, stop, max_new):
    """Greedy answers the way llama-cpp-python's own completion writes them, one prompt after another."""
    llm = LlamaCppScorer(gguf_path, n_ctx=256, trees=False).llm
    out = []
    for p in prompts:
        llm.reset()
        out.append(llm(p, max_tokens=max_new, temperature=0.0, top_k=1, stop=stop)["choices"][0]["text"].strip())
    return out


def test_answers_generated_together_in_llama_cpp_equal_answers_generated_one_at_a_time(tiny_export, monkeypatch):
    import llama_cpp.llama_cpp as low

    from kit.models.llamacpp import LlamaCppError
    from kit.stages.export import parity_generations

    _, merged_gguf, _ = tiny_export
    prompts = [f"<start_of_turn>user\n{t}<end_of_turn>\n<start_of_turn>model\n"
               for t in ("My claim was refused", "Where is my card?", "Hi", "Please change the address on my policy",
                         "Two words", "The invoice is wrong again and nobody answers")]
    alone = _one_at_a_time(merged_gguf, prompts, ["<end_of_turn>"], 20)
    assert len(set(alone)) > 1 and all(alone)  # different prompts, different answers: a mix-up between them would show
    # A stop string that occurs inside an answer cuts it there, as llama-cpp-python's completion does.
    stop = ["<end_of_turn>", alone[3][len(alone[3]) // 2:][:3]]
    alone_stopped = _one_at_a_time(merged_gguf, prompts, stop, 20)
    assert alone_stopped[3] != alone[3]

    assert parity_generations(str(merged_gguf), prompts, ["<end_of_turn>"], None, 20) == alone
    moves = []  # answer 3 stops early: the last live answer moves into its sequence, and answers stay the same
    copy = low.llama_memory_seq_cp
    monkeypatch.setattr(low, "llama_memory_seq_cp", lambda mem, src, dst, p0, p1: (moves.append((src, dst)),
                                                                                    copy(mem, src, dst, p0, p1)))
    assert parity_generations(str(merged_gguf), prompts, stop, None, 20) == alone_stopped
    assert moves and moves[0] == (5, 3), moves
    monkeypatch.undo()
    seen = []
    few = LlamaCppScorer(merged_gguf, n_ctx=64, sequences=2, report=lambda: seen.append(1))  # three groups of two
    assert few.generate(prompts, stop, 20) == alone_stopped and len(seen) == len(prompts)
    few.llm.n_batch = 7  # prompts decoded a few tokens at a time, as longer ones are
    assert few.generate(prompts, stop, 20) == alone_stopped
    # In the scorer with label trees (one cache for all sequences) answers come one at a time, and scoring afterwards
    # starts from an empty cache.
    scorer = LlamaCppScorer(merged_gguf, n_ctx=128)
    labels = ["checkbalance", "replacecard"]
    before = scorer.score(prompts[:2], labels)
    assert scorer.generate(prompts, stop, 20) == alone_stopped
    assert np.allclose(scorer.score(prompts[:2], labels), before, atol=1e-6)
    with pytest.raises(LlamaCppError, match="more than llama.cpp's context"):
        LlamaCppScorer(merged_gguf, n_ctx=64, sequences=2).generate(prompts + ["claim " * 600], stop, 4)
