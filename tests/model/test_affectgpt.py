"""The AffectGPT module over the tiny zoo: every family trains and generates, losses, freezing, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affectgpt.model import AffectGPT
from affectgpt.model.prompt import AUDIO_TOKEN, IGNORE_INDEX, VIDEO_TOKEN

FAMILIES = ["llama", "qwen2", "mistral", "gemma", "phi3"]


def build(cfg, seed: int = 0) -> AffectGPT:
    torch.manual_seed(seed)  # the adapter modules are initialised at random
    return AffectGPT.from_config(cfg)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_forward_backward_generate(family, make_config, samples):
    model = build(make_config(family)).train()
    batch = model.collator()(samples(3))
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert all(p.grad is not None for p in trainable.values()), [n for n, p in trainable.items() if p.grad is None]
    # The video and audio features reach the loss through the placeholders.
    assert model.video.proj.net[0].weight.grad.abs().sum() > 0
    assert model.audio.proj.net[0].weight.grad.abs().sum() > 0
    model.eval()
    texts = model.generate(samples(2, seed=1), max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_loss_is_mean_over_description_tokens(make_config, samples):
    model = build(make_config())
    batch = model.collator()(samples(3))
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    labels = batch["labels"]
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(model(**batch).loss, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_target_only_head_gives_transformers_loss_and_grads(family, make_config, samples):
    """The head projects only the target positions; loss and gradients are those of the LLM's own ``labels=``
    loss over full-sequence logits."""
    model = build(make_config(family))
    batch = model.collator()(samples(3))
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def reference():  # transformers' path: the LLM's forward with labels, logits at every position
        embeds = model.embed(**{k: v for k, v in inputs.items() if k != "attention_mask"})
        return model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"],
                         num_items_in_batch=7, use_cache=False).loss

    results = []
    for loss_fn in (reference, lambda: model(**batch, num_items_in_batch=7).loss):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (expected, expected_grads), (loss, grads) = results
    assert model(**batch).logits is None  # no full-sequence logits are made when there are labels
    torch.testing.assert_close(loss, expected)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_target_only_head_soft_caps_as_gemma2_does():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from affectgpt.model.affectgpt import description_loss

    torch.manual_seed(0)
    llm = Gemma2ForCausalLM(Gemma2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                         final_logit_softcapping=0.5))
    ids = torch.randint(0, 64, (2, 9))
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX
    hidden = llm.get_decoder()(input_ids=ids).last_hidden_state
    expected = llm(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(description_loss(llm, hidden, labels, None), expected)
    llm.config.final_logit_softcapping = None  # the cap is what makes the two agree
    assert not torch.allclose(description_loss(llm, hidden, labels, None), expected)


@pytest.mark.parametrize(("family", "attn"), [("llama", "sdpa"), ("llama", "eager"), ("mistral", "sdpa"),
                                              ("phi3", "eager"), ("gemma", "sdpa")])
def test_packed_loss_and_grads_equal_padded(family, attn, make_config, samples):
    model = build(make_config(family, attn_implementation=attn))
    batch = samples(4)
    padded = model(**model.collator()(batch)).loss
    padded.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    packed_batch = model.collator(packed=True)(batch)
    assert packed_batch["input_ids"].shape[0] == 1
    packed = model(**packed_batch).loss
    packed.backward()
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_frozen_encoders_get_no_grads_and_no_optimizer_state(make_config, samples):
    model = build(make_config())
    encoder_params = [p for b in (model.video, model.audio) for p in b.encoder.parameters()]
    assert encoder_params and not any(p.requires_grad for p in encoder_params)
    model.train()
    assert not model.video.encoder.model.training  # frozen encoders stay in eval mode
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = [p.detach().clone() for p in encoder_params]
    model(**model.collator()(samples(2))).loss.backward()
    opt.step()
    assert all(p.grad is None for p in encoder_params)
    assert not any(p in opt.state for p in encoder_params)
    assert all(torch.equal(a, p) for a, p in zip(before, encoder_params, strict=True))
    assert len(opt.state) == sum(p.requires_grad for p in model.parameters())


def test_unfrozen_encoders_train(make_config, samples):
    model = build(make_config(freeze_encoders=False)).train()
    model(**model.collator()(samples(2))).loss.backward()
    assert model.video.encoder.model.training
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.video.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.audio.encoder.parameters())


def test_missing_audio_uses_learned_tokens_not_the_waveform(make_config, samples):
    model = build(make_config()).eval()
    batch = samples(2, audio_seconds=None)
    collate = model.collator()
    inputs = collate(batch)
    assert not inputs["has_audio"].any()
    loss = model(**inputs).loss
    inputs["audio"] = torch.randn_like(inputs["audio"])  # whatever stands in for no audio
    torch.testing.assert_close(model(**inputs).loss, loss)
    inputs["has_audio"][:] = True  # the same tensors read as real audio change the prediction
    assert not torch.allclose(model(**inputs).loss, loss)


def test_missing_video_is_explicit(make_config, samples):
    model = build(make_config())
    batch = samples(2)
    batch[1]["frames"] = np.zeros((0, 24, 24, 3), np.uint8)
    inputs = model.collator()(batch)
    assert inputs["has_video"].tolist() == [True, False]
    assert torch.isfinite(model(**inputs).loss)


@pytest.mark.parametrize("fusion", ["qformer", "attention", "mean"])
@pytest.mark.parametrize(("video_encoder", "audio_encoder"), [("clip-tiny", "whisper-tiny"),
                                                              ("siglip-tiny", "hubert-tiny")])
def test_fusion_and_encoder_kinds(fusion, video_encoder, audio_encoder, make_config, samples):
    cfg = make_config(video={"fusion": fusion}, audio={"fusion": fusion}, video_encoder=video_encoder,
                      audio_encoder=audio_encoder)
    model = build(cfg)
    batch = samples(3)
    batch[0]["audio"] = batch[0]["audio"][:4000]  # unequal lengths: HuBERT pads and masks
    out = model(**model.collator()(batch))
    assert torch.isfinite(out.loss)
    out.loss.backward()


def test_single_modality_and_pre_fusion(make_config, samples):
    video_only = build(make_config(audio=False))
    batch = video_only.collator()(samples(2))
    assert "audio" not in batch and "audio_lengths" not in batch
    assert (batch["input_ids"] == video_only.token_ids[AUDIO_TOKEN]).sum() == 0
    assert torch.isfinite(video_only(**batch).loss)

    fused = build(make_config(pre_fusion_tokens=2))
    out = fused(**fused.collator()(samples(2)))
    out.loss.backward()
    assert fused.pre_fusion.queries.grad.abs().sum() > 0


def test_batched_generation_matches_one_by_one(make_config, samples):
    model = build(make_config("mistral")).eval()
    batch = samples(3, seed=4)
    together = model.generate(batch, max_new_tokens=6)
    alone = [model.generate([s], max_new_tokens=6)[0] for s in batch]
    assert together == alone


def test_sampling_options(make_config, samples):
    model = build(make_config()).eval()
    batch = samples(2)
    torch.manual_seed(0)
    first = model.generate(batch, max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.95)
    torch.manual_seed(0)
    again = model.generate(batch, max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.95)
    torch.manual_seed(1)
    other = model.generate(batch, max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.95)
    assert first == again and first != other


@pytest.mark.parametrize("family", ["qwen2", "llama"])  # tied and untied embeddings
def test_save_load_round_trip(family, make_config, samples, tmp_path):
    model = build(make_config(family, pre_fusion_tokens=2)).eval()
    batch = model.collator()(samples(2))
    logits = model(**batch).logits
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "affectgpt.yaml").is_file()
    loaded = AffectGPT.from_pretrained(tmp_path / "m").eval()
    torch.testing.assert_close(loaded(**loaded.collator()(samples(2))).logits, logits, rtol=0, atol=0)
    tied = model.llm.config.tie_word_embeddings
    assert (loaded.llm.lm_head.weight is loaded.llm.get_input_embeddings().weight) == tied
    assert (loaded.video.encoder.model.config.model_type, loaded.audio.encoder.model.config.model_type) == (
        "clip_vision_model", "whisper")


def test_save_accepts_an_external_state_dict(make_config, samples, tmp_path):
    """What an export from a consolidated ZeRO-3 checkpoint does."""
    model = build(make_config()).eval()
    state = {k: v + 0.01 if k.startswith("llm.") or "proj" in k else v for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "m", state_dict=state)
    loaded = AffectGPT.from_pretrained(tmp_path / "m")
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


def test_random_llm_init_keeps_architecture(make_config):
    pretrained = build(make_config(video=False, audio=False))
    random = build(make_config(video=False, audio=False, llm_init="random"), seed=1)
    assert type(random.llm) is type(pretrained.llm)
    a, b = pretrained.llm.state_dict(), random.llm.state_dict()
    assert a.keys() == b.keys()
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], b["model.layers.0.mlp.up_proj.weight"])


def test_wrong_batch_is_a_clear_error(make_config, samples):
    model = build(make_config())
    batch = model.collator()(samples(2))
    batch["input_ids"][batch["input_ids"] == model.token_ids[VIDEO_TOKEN]] = 0
    with pytest.raises(ValueError, match="slots"):
        model(**batch)
    del batch["frames"]
    with pytest.raises(ValueError, match="frames"):
        model(**batch)


def test_bfloat16_model_takes_float32_batches(make_config, samples):
    model = build(make_config(dtype="bfloat16", audio_encoder="hubert-tiny"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    batch = model.collator()(samples(2))
    assert torch.isfinite(model(**batch).loss)
    batch.pop("labels")
    assert model(**batch).logits.dtype == torch.bfloat16


def test_activation_checkpointing_gives_the_same_gradients(make_config, samples):
    model = build(make_config()).train()
    batch = model.collator()(samples(2))
    model(**batch).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.activation_checkpointing_enable()
    assert model.llm.is_activation_checkpointing
    model(**batch).loss.backward()
    for name, p in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name], msg=name)


def test_budgeted_rows_add_up_to_the_packed_loss_and_grads(make_config, samples):
    """A packed micro-batch forwarded row by row (``split_packed``), each row's token-loss sum divided by the
    whole batch's target count, gives the batch's loss and gradients."""
    from affectgpt.model.collator import sample_lengths, split_packed

    model = build(make_config("llama"))
    batch = model.collator(packed=True)(samples(4))
    targets = int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())
    whole = model(**batch, num_items_in_batch=targets).loss
    whole.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    lengths = sample_lengths(batch)
    rows = split_packed(batch, max(lengths[0] + lengths[1], *lengths))
    assert len(rows) > 1
    total = 0.0
    for row in rows:
        loss = model(**row, num_items_in_batch=targets).loss
        loss.backward()
        total += loss.detach()
    torch.testing.assert_close(total, whole.detach(), rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
