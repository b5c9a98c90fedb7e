import pytest

from kit import models


def test_embedded_model_is_cached_and_keyed_by_gguf_sha(embedded):
    assert embedded.model_type.startswith("gemma3")
    assert embedded.path.endswith(embedded.sha256[:16])
    assert embedded.chat_format.name == "gemma" and embedded.license_id == "gemma"
    again = models.resolve()
    assert again == embedded


def test_local_checkpoint_resolves_with_a_content_hash(tiny_model_dir):
    r = models.resolve(str(tiny_model_dir))
    assert r.model_type == "gemma3_text" and len(r.sha256) == 64 and r.license_id is None


def test_directory_without_config_explains_what_is_expected(tmp_path):
    with pytest.raises(models.ModelError, match="neither a .gguf file nor a Hugging Face checkpoint directory"):
        models.resolve(str(tmp_path))


def test_unknown_hub_id_offline_says_how_to_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelError, match="neither the embedded model, a local directory or GGUF file, an `ollama:` model, nor a Hugging Face id"):
        models.resolve("no-such-org/no-such-model")


def test_unknown_embedded_name_lists_the_known_one():
    with pytest.raises(models.ModelError, match="embedded:gemma3-270m"):
        models.resolve("embedded:llama-9000")
