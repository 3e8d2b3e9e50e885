import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cs231n_gen import oracle, viz, widgets  # noqa: E402
from cs231n_gen.data import eight_gaussians  # noqa: E402
from cs231n_gen.sampling import euler  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_flow_player_scrubs_precomputed_frames():
    mix = eight_gaussians()
    _, traj, times = euler(oracle.VelocityOracle(mix), torch.randn(200, 2), 10, return_trajectory=True)
    player = widgets.flow_player(traj, times, reference=mix.sample(100))
    assert player.slider.max == 10 and player.play.max == 10
    first = player.image.value
    assert first[:4] == b"\x89PNG"
    player.slider.value = 10  # what dragging does
    assert player.image.value != first and player.caption.value == "t = 0.00: from 1 (noise) to 0 (data)"
    player.slider.value = 0
    assert player.image.value == first  # cached frame
    with pytest.raises(ValueError, match="times"):
        widgets.flow_player(traj, times[:-1])
    with pytest.raises(ValueError, match="trajectory"):
        widgets.flow_player(traj[..., :1], times)


def test_interpolation_explorer_moves_points():
    x, z = torch.randn(50, 2), torch.randn(50, 2)
    ex = widgets.interpolation_explorer(x, z, n_frames=5, static=False)
    before = ex.image.value
    ex.slider.value = 4
    assert ex.image.value != before and ex.caption.value == "t = 1.00: from 0 (data) to 1 (noise)"
    with pytest.raises(ValueError, match="z"):
        widgets.interpolation_explorer(x, z[:10])


def test_figures_build():
    mix = eight_gaussians()
    fig = viz.compare_fields({"oracle": oracle.VelocityOracle(mix)}, [1.0, 0.5], n=5)
    assert len(fig.axes) == 2
    fig = viz.plot_samples({"a": mix.sample(50), "b": torch.randn(50, 2)})
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="t"):
        viz.plot_field(plt.gca(), oracle.VelocityOracle(mix), 2.0)
    with pytest.raises(ValueError, match="panels"):
        viz.plot_samples({})


def test_gan_training_player_scrubs_snapshots():
    from cs231n_gen import gan
    from cs231n_gen.nn import MLPDiscriminator, MLPGenerator

    mix = eight_gaussians()
    h = gan.train_gan(MLPGenerator(4, 2, 16, 1), MLPDiscriminator(2, 16, 1), mix, steps=20, device="cpu",
                      progress=False, snapshot_every=10, snapshot_n=50, snapshot_grid=(3.0, 12))
    player = widgets.gan_training_player(h, reference=mix.sample(100))
    assert player.slider.max == 2 and player.caption.value == "step 0"
    first = player.image.value
    player.slider.value = 2
    assert player.image.value != first and player.caption.value == "step 20"
    h.snapshots = []
    with pytest.raises(ValueError, match="snapshots"):
        widgets.gan_training_player(h)


def test_latent_interpolation_walks_between_images():
    from cs231n_gen.nn.dcgan import DCGenerator

    G = DCGenerator(z_dim=4, size=8, width=4)
    z0, z1 = torch.randn(3, 4), torch.randn(3, 4)
    player = widgets.latent_interpolation(G, z0, z1, n_frames=5)
    assert player.slider.max == 4 and player.caption.value == "t = 0.00"
    first = player.image.value
    player.slider.value = 4
    assert player.image.value != first and player.caption.value == "t = 1.00"
    with pytest.raises(ValueError, match="z1"):
        widgets.latent_interpolation(G, z0, z1[:2])


def test_image_grid_and_decision_map():
    fig, ax = plt.subplots()
    imgs = -torch.ones(5, 1, 4, 4)
    imgs[:, :, 1:3, 1:3] = 1.0  # ink in the middle
    viz.image_grid(ax, imgs, per_row=3)
    canvas = ax.images[0].get_array()
    assert canvas.shape == (2 * 5 + 1, 3 * 5 + 1)
    assert canvas[1, 1] == 1.0 and canvas[2, 2] == 0.0  # background white, ink black
    with pytest.raises(ValueError, match="channel"):
        viz.image_grid(ax, torch.zeros(2, 4, 4, 4))
    im = viz.plot_decision(ax, torch.rand(6, 6), lim=2.0)
    assert im.get_extent() == [-2.0, 2.0, -2.0, 2.0]


def test_guidance_explorer_scrubs_w():
    from cs231n_gen.data import overlapping_classes

    data = overlapping_classes()
    labels = torch.arange(3).repeat_interleave(50)
    z = torch.randn(150, 2)
    ws = [0.0, 1.0, 4.0]
    samples = torch.stack([euler(lambda x, t, w=w: oracle.guided_velocity(data, x, t, labels, w), z, 8) for w in ws])
    ex = widgets.guidance_explorer(ws, samples, labels, reference=data.sample(100)[0],
                                   captions=["a", "b", "c"])
    first = ex.image.value
    ex.slider.value = 2
    assert ex.image.value != first and ex.caption.value == "w = 4: c"
    with pytest.raises(ValueError, match="ws"):
        widgets.guidance_explorer(ws[:2], samples, labels)
    with pytest.raises(ValueError, match="labels"):
        widgets.guidance_explorer(ws, samples, labels[:10])
    with pytest.raises(ValueError, match="captions"):
        widgets.guidance_explorer(ws, samples, labels, captions=["a"], static=False)


def test_time_sampler_explorer_redraws_on_each_slider():
    ex = widgets.time_sampler_explorer(reference=(torch.linspace(0, 1, 11), torch.rand(11)), static=True)
    base, sliders, image = ex.children
    before = image.value
    assert before[:4] == b"\x89PNG"
    m, s, shift = sliders.children
    for control, value in ((m, 1.0), (s, 0.5), (shift, 4.0)):
        old = image.value
        control.value = value
        assert image.value != old
    base.children[0].value = "uniform"
    assert image.value != before
    with pytest.raises(ValueError, match="reference"):
        widgets.time_sampler_explorer(reference=(torch.linspace(0, 1, 11), torch.rand(5)))


def test_class_scatter_and_field_colours():
    fig, ax = plt.subplots()
    viz.class_scatter(ax, torch.randn(30, 2), torch.arange(30) % 3, title="classes")
    assert len(ax.collections) == 3
    with pytest.raises(ValueError, match="labels"):
        viz.class_scatter(ax, torch.randn(30, 2), torch.arange(30) % 3 + 7)
    fig = viz.compare_fields({"a": oracle.VelocityOracle(eight_gaussians())}, [0.5], n=4, colors=["red"])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="colors"):
        viz.compare_fields({"a": oracle.VelocityOracle(eight_gaussians())}, [0.5], colors=[])


def test_path_explorer_redraws_for_path_target_and_t():
    from cs231n_gen import paths

    ex = widgets.path_explorer(eight_gaussians(), {"RF": paths.rectified_flow(), "VE": paths.ve()}, static=False)
    menus, t_slider, image = ex.children
    path_box, target_box = menus.children
    for control, value in ((t_slider, 0.8), (target_box, "score"), (path_box, "VE")):
        old = image.value
        control.value = value
        assert image.value != old
    with pytest.raises(ValueError, match="targets"):
        widgets.path_explorer(eight_gaussians(), {"RF": paths.rectified_flow()}, targets=("noise",))
    with pytest.raises(ValueError, match="paths"):
        widgets.path_explorer(eight_gaussians(), {})


def test_decoder_comparison_and_guidance_samples_scrub_precomputed_frames():
    from cs231n_gen.data import shapes

    real = shapes(8, generator=torch.Generator().manual_seed(0))
    blurred = torch.nn.functional.avg_pool2d(real.images, 3, stride=1, padding=1)
    player = widgets.decoder_comparison(real.images, blurred, real.images, captions=real.captions, per_frame=4)
    assert player.slider.max == 1 and player.image.value[:4] == b"\x89PNG"
    first = player.image.value
    player.slider.value = 1
    assert player.image.value != first and player.caption.value == "examples 5-8 of 8"
    fig, ax = plt.subplots()
    player._draw(ax, 1)  # the second frame names its four rows by their captions
    assert [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()] == real.captions[4:8]
    with pytest.raises(ValueError, match="plain must have the shape"):
        widgets.decoder_comparison(real.images, blurred[:3], real.images)
    with pytest.raises(ValueError, match="originals must be RGB"):
        widgets.decoder_comparison(real.images[:, :1], blurred, real.images)
    frames = torch.stack([real.images, blurred, real.images.flip(0)])
    samples = widgets.guidance_samples([0.0, 1.0, 2.0], frames, ["circle", "square"], static=False)
    samples.slider.value = 2
    assert samples.caption.value.startswith("w = 2")
    fig, ax = plt.subplots()
    samples._draw(ax, 0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["circle", "square"]
    with pytest.raises(ValueError, match="names"):
        widgets.guidance_samples([0.0, 1.0, 2.0], frames, ["a", "b", "c"], static=False)
    with pytest.raises(ValueError, match="one frame per weight"):
        widgets.guidance_samples([0.0, 1.0], frames, ["a", "b"], static=False)


def test_token_grid_redraws_per_patch_size_and_names_bad_inputs():
    from cs231n_gen.data import shapes

    image = shapes(1, generator=torch.Generator().manual_seed(0)).images[0]
    player = widgets.token_grid(image, (4, 8, 8), patch_sizes=(1, 2, 4), static=False)
    assert player.slider.max == 2 and player.caption.value.startswith("patch 1x1: 64 tokens")
    first = player.image.value
    player.slider.value = 2
    assert player.image.value != first and player.caption.value == "patch 4x4: 4 tokens of 4 * 4 * 4 = 64 numbers"
    with pytest.raises(ValueError, match="patch_sizes must divide"):
        widgets.token_grid(image, (4, 8, 8), patch_sizes=(3,), static=False)
    with pytest.raises(ValueError, match="image must be one RGB image"):
        widgets.token_grid(image[:1], (4, 8, 8), static=False)
    with pytest.raises(ValueError, match="latent_shape"):
        widgets.token_grid(image, (4, 7, 7), static=False)


def test_image_grid_shows_colour():
    from cs231n_gen.data import shapes

    fig, ax = plt.subplots()
    viz.image_grid(ax, shapes(5, generator=torch.Generator().manual_seed(0)).images, per_row=3)
    assert ax.images[0].get_array().shape[-1] == 3
    with pytest.raises(ValueError, match="1 or 3 channels"):
        viz.image_grid(ax, torch.zeros(2, 2, 4, 4))


def test_prompt_box_redraws_for_a_typed_prompt_and_shows_bad_words_as_a_message():
    from cs231n_gen.data import moving_shapes, parse_caption, shapes

    calls = []

    def generate(prompt, w):  # real images whose colour follows the prompt
        calls.append((prompt, w))
        color = parse_caption(prompt).get("color", 0)
        data = shapes(64, generator=torch.Generator().manual_seed(int(w)))
        return data.images[data.labels["color"] == color][:4]

    box = widgets.prompt_box(generate, "a red circle", w=2.0, per_row=4, static=False)
    first = box.image.value
    assert first[:4] == b"\x89PNG" and box.message.value == "4 samples" and calls == [("a red circle", 2.0)]
    box.text.value = "a blue square"
    assert box.image.value != first and calls[-1] == ("a blue square", 2.0)
    shown = box.image.value
    box.text.value = "a purple square"
    assert "purple" in box.message.value and box.image.value == shown  # a message, the last images stay
    box.weight.value = 4.0
    assert calls[-1] == ("a purple square", 4.0) and "purple" in box.message.value
    box.text.value = "a green cross"
    assert box.message.value == "4 samples" and box.image.value != shown
    with pytest.raises(ValueError, match="w must be <= 6.0"):
        widgets.prompt_box(generate, "a red circle", w=7.0, static=False)
    with pytest.raises(ValueError, match="generate"):
        widgets.prompt_box("not callable", "a red circle", static=False)
    clips = moving_shapes(3, 4, generator=torch.Generator().manual_seed(0))
    player = widgets.clip_player(clips.videos, clips.captions, static=False)
    before = player.image.value
    player.slider.value = 3
    assert player.slider.max == 3 and player.image.value != before and player.caption.value == "frame 4 of 4"
    fig, ax = plt.subplots()
    player._draw(ax, 0)  # every clip with the prompt that made it
    assert sorted(t.get_text().replace("\n", " ") for t in ax.texts) == sorted(clips.captions)
    with pytest.raises(ValueError, match="captions"):
        widgets.clip_player(clips.videos, clips.captions[:2], static=False)
    with pytest.raises(ValueError, match="videos"):
        widgets.clip_player(clips.videos[0], clips.captions, static=False)


def test_captioned_grid_and_column_labels_say_what_each_image_is():
    images = torch.rand(5, 3, 8, 8) * 2 - 1
    captions = ["a small red circle at the top left", "b", "c", "d", "a large blue square in the center"]
    fig, ax = plt.subplots()
    viz.captioned_grid(ax, images, captions, per_row=3, wrap=12)
    assert [t.get_text().replace("\n", " ") for t in ax.texts] == captions
    assert all(len(line) <= 12 for t in ax.texts for line in t.get_text().split("\n"))
    assert viz.captioned_grid_aspect(captions, 8, 8, 3, wrap=12) > viz.captioned_grid_aspect(["x"] * 5, 8, 8, 3)
    with pytest.raises(ValueError, match="captions"):
        viz.captioned_grid(ax, images, captions[:4])
    fig, ax = plt.subplots()
    viz.image_grid(ax, images, per_row=5)
    viz.label_columns(ax, list("01234"), tile=8, title="asked for")
    assert [t.get_text() for t in ax.get_xticklabels()] == list("01234") and ax.get_xlabel() == "asked for"
    centres = ax.get_xticks()
    assert centres[0] == pytest.approx(1 + 3.5) and centres[1] - centres[0] == pytest.approx(9)


def test_gan_snapshot_key_and_class_legend():
    from cs231n_gen.gan import Snapshot

    snap = Snapshot(5, torch.randn(50, 2), torch.rand(20, 20))
    fig, ax = plt.subplots()
    viz.plot_gan_snapshot(ax, snap, reference=torch.randn(30, 2), lim=3.0, key=True)
    bar = fig.axes[-1]
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0: fake", "1/2", "1: real"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data", "G(z)"]
    fig, ax = plt.subplots()
    viz.class_scatter(ax, torch.randn(30, 2), torch.arange(30) % 3, legend=True)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["y = 0", "y = 1", "y = 2"]


def test_curves_draw_one_line_per_series_with_a_reference_and_plain_log_ticks():
    fig, ax = plt.subplots()
    viz.curves(ax, [0, 1, 2, 4], {"learned": [2.0, 4.0, 9.0, 20.0], "exact": [1.0, 3.0, 8.0, 19.0]},
               xlabel="w", ylabel="W2 ratio", title="sweep", logy=True, reference=(1.5, "real data"),
               styles={"exact": ("s--", viz.ORACLE)})
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"learned", "exact", "real data"}
    assert list(lines["exact"].get_ydata()) == [1.0, 3.0, 8.0, 19.0] and lines["exact"].get_linestyle() == "--"
    assert ax.get_yscale() == "log" and ax.get_title() == "sweep" and ax.get_xlabel() == "w"
    assert isinstance(ax.yaxis.get_major_formatter(), matplotlib.ticker.FormatStrFormatter)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["learned", "exact", "real data"]
    with pytest.raises(ValueError, match=r"series\['a'\] must hold 4 values"):
        viz.curves(ax, [0, 1, 2, 4], {"a": [1.0, 2.0]}, xlabel="w", ylabel="y")
    with pytest.raises(ValueError, match="logy"):
        viz.curves(ax, [0, 1], {"a": [0.0, 2.0]}, xlabel="w", ylabel="y", logy=True)
    with pytest.raises(ValueError, match="styles"):
        viz.curves(ax, [0, 1], {"a": [1.0, 2.0]}, xlabel="w", ylabel="y", styles={"a": "o-"})
    with pytest.raises(ValueError, match="ylabel must be a str, got None"):
        viz.curves(ax, [0, 1], {"a": [1.0, 2.0]}, xlabel="w", ylabel=None)
    # Lines measured at different settings: x per line.
    fig, ax = plt.subplots()
    viz.curves(ax, {"teacher": [1, 2, 4, 8], "student": [2, 4]},
               {"teacher": [5.0, 3.0, 2.0, 1.2], "student": [2.5, 1.5]}, xlabel="steps", ylabel="W2 ratio")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["student"].get_xdata()) == [2, 4] and list(lines["teacher"].get_xdata()) == [1, 2, 4, 8]
    with pytest.raises(ValueError, match=r"x, given per line, must have the labels of series \['a'\], got \['b'\]"):
        viz.curves(ax, {"b": [0, 1]}, {"a": [1.0, 2.0]}, xlabel="w", ylabel="y")
    with pytest.raises(ValueError, match=r"series\['a'\] must hold 3 values"):
        viz.curves(ax, {"a": [0, 1, 2]}, {"a": [1.0, 2.0]}, xlabel="w", ylabel="y")
    plt.close("all")
