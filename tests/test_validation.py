"""Settings that pass a type check but used to give NaN, garbage or a crash deep inside torch."""
import pytest
import torch

from cs231n_gen import digit_judge, gan, guidance, oracle, paths, sampling, schedules
from cs231n_gen.data import eight_gaussians
from cs231n_gen.nn import MLPGenerator, TimeMLP

MIX = eight_gaussians()
Z = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("sampler", [sampling.ddim, sampling.ddpm, sampling.probability_flow, sampling.reverse_sde])
def test_samplers_refuse_a_start_time_where_the_target_cannot_be_converted(sampler):
    path = paths.vp_cosine()  # a(1) = 0: an eps prediction says nothing about x there
    with pytest.raises(ValueError, match="t_start"):
        sampler(oracle.Oracle(MIX, path, "eps"), Z, 4, path=path, target="eps", t_start=1.0)


def test_reverse_sde_refuses_t_start_where_its_drift_is_infinite():
    path = paths.rectified_flow()
    with pytest.raises(ValueError, match="t_start"):
        sampling.reverse_sde(oracle.Oracle(MIX, path, "x"), Z, 4, path=path, target="x", t_start=1.0)


def test_oracle_score_at_t0_is_an_error_not_nan():
    with pytest.raises(ValueError, match="score"):
        oracle.predict(MIX, Z, 0.0, paths.vp_cosine(), "score")
    assert torch.isfinite(oracle.predict(MIX, Z, 0.5, paths.vp_cosine(), "score")).all()


@pytest.mark.parametrize("t", [1.5, float("nan"), -0.1])
def test_cfg_velocity_checks_its_time(t):
    model = TimeMLP(hidden=8, depth=1, num_classes=3)
    with pytest.raises(ValueError, match="t"):
        guidance.cfg_velocity(model, Z, t, 0, 1.0)
    with pytest.raises(ValueError, match="x_t"):
        guidance.cfg_velocity(model, Z * float("nan"), 0.5, 0, 1.0)


def test_time_mlp_refuses_integer_inputs_and_labels_out_of_range():
    model = TimeMLP(hidden=8, depth=1, num_classes=3)
    with pytest.raises(ValueError, match="x must be a floating-point"):
        model(torch.ones(4, 2, dtype=torch.long), torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="t must be a floating-point"):
        model(torch.ones(4, 2), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"y must lie in 0\.\.3"):
        model(torch.ones(4, 2), torch.full((4,), 0.5), torch.tensor([0, 1, 2, 7]))
    with pytest.raises(ValueError, match="time_dim"):
        TimeMLP(time_dim=3)


def test_path_methods_check_shapes_and_times():
    path = paths.vp_cosine()
    with pytest.raises(ValueError, match="z must have the shape of x"):
        path.target("eps", Z, Z[:1], 0.5)  # used to broadcast silently
    for bad in (1.5, float("nan"), "half"):
        with pytest.raises(ValueError, match="t"):
            path.a(bad)
    with pytest.raises(ValueError, match="t must lie where"):
        path.to_x_eps(Z, "eps", Z, 1.0)


def test_grids_and_metrics_refuse_what_they_cannot_use():
    with pytest.raises(ValueError, match="dtype"):
        schedules.time_grid(4, dtype=torch.int64)
    judge_like = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    with pytest.raises(ValueError, match="labels"):
        digit_judge.accuracy(judge_like, torch.zeros(10, 1, 2, 2), torch.tensor([3]))  # used to broadcast
    with pytest.raises(ValueError, match="images"):
        digit_judge.accuracy(judge_like, torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long))


def test_deep_crashes_are_now_clear_errors():
    G = MLPGenerator(4, 2, 8, 1)
    with pytest.raises(ValueError, match="generator"):
        MIX.sample(5, generator=0)
    with pytest.raises(ValueError, match="batch_size"):
        gan.sample(G, 5, batch_size=0)
    with pytest.raises(ValueError, match="t"):
        oracle.affine_loss(MIX, float("nan"))
    with pytest.raises(ValueError, match="t"):
        oracle.irreducible_loss(MIX, torch.tensor([]))


def test_inputs_that_used_to_crash_inside_torch_or_give_nan():
    import cs231n_gen
    from cs231n_gen import autoregressive
    from cs231n_gen.image_metrics import shape_attributes
    from cs231n_gen.nn.vq import VectorQuantizer

    with pytest.raises(ValueError, match="seed must be below 2"):
        cs231n_gen.seed_everything(2**64)
    assert cs231n_gen.seed_everything(2**64 - 1) == 2**64 - 1
    assert autoregressive.to_levels(torch.empty(0, 1, 8, 8)).shape == (0, 64)
    for mode in (True, False):
        with pytest.raises(ValueError, match="z must hold at least one vector"):
            VectorQuantizer(8, 4).train(mode)(torch.empty(0, 4, 2, 2))
    with pytest.raises(ValueError, match=r"images must lie in \[-1, 1\]"):
        shape_attributes(torch.full((2, 3, 32, 32), 50.0))
    with pytest.raises(ValueError, match="images contains NaN"):
        shape_attributes(torch.full((2, 3, 32, 32), float("nan")))
    assert shape_attributes(torch.full((1, 3, 32, 32), 1.5))["found"].shape == (1,)


def test_the_checks_of_the_librarys_own_kinds_live_with_their_class():
    from cs231n_gen.data.toy2d import LabelledMixture, check_labelled_mixture, check_mixture

    path = paths.vp_cosine()
    assert paths.check_path(path) is path and paths.check_target("target", "eps") == "eps"
    assert check_mixture("mixture", MIX) is MIX
    labelled = LabelledMixture(MIX, torch.arange(8) % 2)
    assert check_labelled_mixture(labelled) is labelled
    with pytest.raises(ValueError, match="path must be a cs231n_gen.paths.DiffusionPath, got str"):
        paths.check_path("vp")
    with pytest.raises(ValueError, match=r"targets must be one of \('x', 'eps'"):
        paths.check_target("targets", "noise")
    with pytest.raises(ValueError, match="reference must be a cs231n_gen.data.GaussianMixture, got Tensor"):
        check_mixture("reference", Z)
    with pytest.raises(ValueError, match="labelled must be a LabelledMixture, got GaussianMixture"):
        check_labelled_mixture(MIX)


def test_the_checks_import_no_concept_module():
    """_validate is machinery: the modules of concepts import it, never the other way round."""
    import ast
    from pathlib import Path

    import cs231n_gen._validate as validate

    imported = {node.module for node in ast.walk(ast.parse(Path(validate.__file__).read_text()))
                if isinstance(node, ast.ImportFrom) and node.module}
    assert all(not m.startswith(".") and not m.startswith("cs231n_gen") for m in imported), imported
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in
                   ast.walk(ast.parse(Path(validate.__file__).read_text())))


def test_value_checks_read_cpu_tensors_only():
    """Range and NaN checks read values back to the host: on the CPU they run; on any other
    device (here torch's meta device, which holds no values) only shapes and types are checked."""
    from cs231n_gen._validate import as_time, check_labels, check_tensor, check_tokens

    with pytest.raises(ValueError, match="token ids in 0..9"):
        check_tokens("tokens", torch.tensor([[3, 12]]), 10)
    with pytest.raises(ValueError, match="y must lie in 0..3"):
        check_labels("y", torch.tensor([0, 5]), 2, 4)
    with pytest.raises(ValueError, match="NaN"):
        check_tensor("x", torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        as_time("t", torch.tensor([2.0]), 1, Z)
    meta = torch.device("meta")
    assert check_tokens("tokens", torch.empty(1, 2, dtype=torch.long, device=meta), 10).device == meta
    assert check_labels("y", torch.empty(2, dtype=torch.long, device=meta), 2, 4).device == meta
    assert check_tensor("x", torch.empty(3, device=meta)).device == meta
    assert as_time("t", torch.empty(1, device=meta), 1, torch.empty(1, 2, device=meta)).device == meta
    with pytest.raises(ValueError, match=r"shaped \(B, T\)"):  # shapes are still checked there
        check_tokens("tokens", torch.empty(3, dtype=torch.long, device=meta), 10)


def test_every_transformer_splits_its_width_by_the_same_rule():
    """One check (_validate.check_width_and_heads) for every transformer and block; each adds only
    its own extra divisor and says what needs it."""
    from cs231n_gen.nn import GPT, DiT, TextEncoder, VideoDiT
    from cs231n_gen.nn.dit import DiTBlock
    from cs231n_gen.nn.layers import Attention
    from cs231n_gen.nn.video_dit import VideoBlock

    builds = {
        "attention": lambda w, h: Attention(w, h),
        "DiT block": lambda w, h: DiTBlock(w, h),
        "GPT": lambda w, h: GPT(vocab_size=8, block_size=4, width=w, depth=1, heads=h),
        "text encoder": lambda w, h: TextEncoder(vocab_size=8, width=w, depth=1, heads=h),
    }
    for name, build in builds.items():
        assert build(12, 3) is not None, name
        with pytest.raises(ValueError, match=r"width must be divisible by heads=4, got 10$"):
            build(10, 4)
        with pytest.raises(ValueError, match="heads must be >= 1, got 0"):
            build(8, 0)
    with pytest.raises(ValueError, match=r"heads=3 and by 4 \(sin-cos position embeddings\), got 6$"):
        DiT(input_size=4, in_channels=1, patch_size=2, width=6, depth=1, heads=3)
    with pytest.raises(ValueError, match=r"heads=3 and by 4 \(sin-cos position embeddings\), got 6$"):
        VideoDiT(frames=2, input_size=4, in_channels=1, patch_size=2, width=6, depth=1, heads=3, context_dim=4)
    with pytest.raises(ValueError, match=r"heads=3 and by 2 \(sin-cos frame embeddings\), got 9$"):
        VideoBlock(9, 3)
