"""Images of any size and mode: decoding, EXIF, header-only inspection, fitting, thumbnails,
and the resident and streaming data paths giving the same training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_support import PHOTO_KINDS, save_photo, synthetic_images, write_photo_folder
from PIL import Image, ImageFile, ImageFilter

from mpt.augment import random_resized_crop
from mpt.data import DataError, FittedImages, ImageFiles, ImageSet, channel_stats, decode_all, thumbnails
from mpt.feed import RESIDENT, STREAMING, choose_data_path, measure_channel_stats, prepare
from mpt.formats import load_dataset, open_dataset
from mpt.images import decode_image, fit_image, image_to_tensor, read_header, thumbnail
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.train import TrainingSetup, predict, train
from mpt.update import run_update

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A small image folder of learnable grey images at sizes 20..72 in every PHOTO_KIND."""
    root = tmp_path_factory.mktemp("photos")
    train = synthetic_images(24, len(CLASSES), seed=11)
    test = synthetic_images(8, len(CLASSES), seed=12)
    return write_photo_folder(root, {"train": train, "test": test}, CLASSES, seed=3)


# ---------------------------------------------------------------------------------------------
# Decoding and headers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PHOTO_KINDS)
def test_every_kind_decodes_to_its_upright_pixels(tmp_path, kind):
    pixels = np.tile(np.linspace(0, 250, 12, dtype=np.uint8), (9, 1))  # 9 x 12, brighter to the right
    pixels[:3] = 30  # a dark band at the top: shows which way is up
    path = save_photo(tmp_path / "x", pixels, kind)
    header = read_header(path)
    assert (header.height, header.width) == (9, 12)  # upright, EXIF turn included
    assert header.grey == (kind == "grey-png")
    image = decode_image(path, channels=3)
    assert image.mode == "RGB" and image.size == (12, 9)
    red = np.asarray(image)[..., 0].astype(int)  # the tint keeps the grey levels in red
    tolerance = 12 if "jpeg" in kind else 6  # JPEG is lossy; the palette has 64 colours
    assert np.abs(red - pixels).mean() < tolerance
    grey = decode_image(path, channels=1)
    assert grey.mode == "L" and grey.size == (12, 9)


def test_exif_orientation_turns_the_image_upright(tmp_path):
    pixels = np.zeros((6, 10), dtype=np.uint8)
    pixels[0, 0] = 255  # a bright top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    # Stored turned counter-clockwise; orientation 6 says "turn clockwise to view".
    Image.fromarray(np.rot90(pixels)).save(tmp_path / "x.png", exif=exif)
    assert (read_header(tmp_path / "x.png").height, read_header(tmp_path / "x.png").width) == (6, 10)
    assert np.array_equal(np.asarray(decode_image(tmp_path / "x.png", channels=1)), pixels)


def test_grey_palette_is_grey_and_sixteen_bit_is_grey(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P").save(tmp_path / "p.png")
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(tmp_path / "i16.png")
    assert read_header(tmp_path / "p.png").grey and read_header(tmp_path / "i16.png").grey


def test_unreadable_image_is_refused_by_name(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.new("L", (4, 4)).save(tmp_path / split / "a" / "ok.png")
    (tmp_path / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        open_dataset(tmp_path)


def test_inspection_reads_headers_only(photos, monkeypatch):
    def no_pixels(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixels)
    bundle = open_dataset(photos)
    described = bundle.describe()
    assert described["train_size"] == 96 and described["test_size"] == 32
    assert described["image_shape"] is None  # sizes differ
    summary = described["image_summary"]
    assert summary["channels"] == 3  # some files have colour
    assert set(summary["modes"]) == {"L", "RGB", "P", "RGBA"}
    assert sum(summary["modes"].values()) == 128
    assert all(20 <= side <= 72 for side in summary["min_size"] + summary["max_size"])
    with pytest.raises(DataError, match="pixels were decoded"):  # the decoder ran only now
        bundle.train.fitted(0, (3, 16, 16))


def test_load_dataset_refuses_mixed_sizes_and_names_image_size(photos):
    with pytest.raises(DataError, match=r"differ in size.*image_size"):
        load_dataset(photos)


def test_digest_follows_the_files(photos, tmp_path):
    import shutil

    copy = shutil.copytree(photos, tmp_path / "copy")
    assert open_dataset(copy).digest == open_dataset(photos).digest
    victim = next((copy / "test" / "a").iterdir())
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    assert open_dataset(copy).digest != open_dataset(photos).digest


# ---------------------------------------------------------------------------------------------
# Fitting and thumbnails
# ---------------------------------------------------------------------------------------------


def test_fit_is_resize_then_centre_crop():
    from torchvision.transforms import functional as TF

    rng = np.random.default_rng(0)
    # Smooth content: two resampling orders then differ only by rounding.
    image = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(2))
    fitted = fit_image(image, (12, 12))
    assert fitted.size == (12, 12)
    expected = TF.center_crop(TF.resize(image, 12), [12, 12])
    assert np.abs(np.asarray(fitted).astype(int) - np.asarray(expected)).mean() < 3
    assert fit_image(image, (30, 50)) is image  # the right size already: untouched


def test_same_size_data_is_not_copied_or_changed():
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    data = ImageSet(images, torch.zeros(5, dtype=torch.long), ["a"])
    assert decode_all(data, (1, 28, 28)) is data
    assert prepare(data, (1, 28, 28), path=RESIDENT, workers=0) is data
    resized = decode_all(data, (3, 32, 32))
    assert resized.shape == (3, 32, 32) and torch.equal(resized.images[:, 0], resized.images[:, 2])


def test_thumbnails_are_small_and_small_images_stay_as_they_are():
    big = torch.randint(0, 256, (3, 224, 160), dtype=torch.uint8)
    assert tuple(thumbnail(big, 64).shape) == (3, 64, 46)
    small = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    assert thumbnail(small, 64) is small


# ---------------------------------------------------------------------------------------------
# Device augmentation
# ---------------------------------------------------------------------------------------------


def test_random_resized_crop_is_seeded_and_the_full_box_is_the_identity():
    images = torch.randint(0, 256, (8, 3, 12, 12), dtype=torch.uint8)

    def crop(seed, **kwargs):
        return random_resized_crop(images, generator=torch.Generator().manual_seed(seed), **kwargs)

    same = crop(0, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(same, images.float(), atol=1e-3)  # up to the grid's float rounding
    a = crop(1, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip=True)
    assert a.shape == (8, 3, 12, 12) and a.dtype == torch.float32
    assert torch.equal(a, crop(1, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip=True))
    assert not torch.equal(a, crop(2, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip=True))
    assert a.min() >= 0 and a.max() <= 255


# ---------------------------------------------------------------------------------------------
# The two data paths
# ---------------------------------------------------------------------------------------------


def test_auto_path_follows_memory_and_the_recipe_overrides_it(photos):
    files = open_dataset(photos).train
    cpu = torch.device("cpu")
    shape = (3, 32, 32)
    choose = lambda requested, fraction: choose_data_path(  # noqa: E731
        requested, train=files, others=[], shape=shape, device=cpu, memory_fraction=fraction
    )
    assert choose("auto", 0.5) == RESIDENT
    assert choose("auto", 1e-9) == STREAMING
    assert choose("streaming", 0.5) == STREAMING and choose("resident", 1e-9) == RESIDENT
    # Data already in memory at the input's shape costs nothing more on the CPU.
    in_memory = ImageSet(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.zeros(10, dtype=torch.long), ["a"])
    assert (
        choose_data_path("auto", train=in_memory, others=[], shape=shape, device=cpu, memory_fraction=1e-9) == RESIDENT
    )


def test_streamed_channel_stats_match_the_resident_ones(photos):
    files = open_dataset(photos).train
    resident = prepare(files, (3, 24, 24), path=RESIDENT, workers=0)
    streamed = prepare(files, (3, 24, 24), path=STREAMING, workers=0)
    assert isinstance(resident, ImageSet) and isinstance(streamed, FittedImages)
    mean, std = channel_stats(resident.images)
    s_mean, s_std = measure_channel_stats(streamed, workers=0)
    assert s_mean == pytest.approx(mean, abs=1e-9) and s_std == pytest.approx(std, abs=1e-9)


@pytest.mark.parametrize(
    "recipe_fields, workers",
    [({"train_crop": "pad", "crop_padding": 2}, 0), ({"train_crop": "random_resized"}, 2)],
)
def test_resident_and_streaming_paths_train_the_same_weights(photos, recipe_fields, workers):
    bundle = open_dataset(photos)
    shape = (3, 20, 20)
    recipe = Recipe(epochs=2, batch_size=32, lr=0.05, decode_workers=workers, **recipe_fields)
    mean, std = (0.4, 0.3, 0.2), (0.3, 0.25, 0.2)
    nets, logits = [], []
    for path in (RESIDENT, STREAMING):
        train_set = prepare(bundle.train, shape, path=path, workers=workers)
        evaluation = prepare(bundle.test, shape, path=path, workers=workers)
        net = build_net("small_cnn", num_classes=len(CLASSES), in_channels=3, seed=5)
        setup = TrainingSetup(
            train_set=train_set,
            new_mask=torch.zeros(len(CLASSES), dtype=torch.bool),
            mean=mean,
            std=std,
            recipe=recipe,
            seed=9,
            validation=evaluation,
            device=torch.device("cpu"),
        )
        train(setup, net=net, method="independent", params=MethodParams())
        nets.append(net)
        logits.append(predict(net, evaluation, mean=mean, std=std, device=torch.device("cpu"), workers=workers))
    resident, streaming = (net.state_dict() for net in nets)
    for key in resident:
        assert torch.allclose(resident[key].float(), streaming[key].float(), rtol=0, atol=1e-6), key
    assert torch.allclose(logits[0], logits[1], atol=1e-5)


def test_first_version_and_update_at_an_image_size(photos):
    bundle = open_dataset(photos)
    recipe = Recipe(epochs=1, batch_size=32, lr=0.05, image_size=24, decode_workers=0)
    common = dict(bundle=bundle, params=MethodParams(), seed=0, device="cpu")
    first = run_update(base=None, classes=CLASSES[:2], arch="small_cnn", method="independent", recipe=recipe, **common)
    assert first.model.spec.image_size == (24, 24) and first.model.spec.in_channels == 3
    assert first.inputs.data_path == RESIDENT and first.inputs.shape == (3, 24, 24)
    # An update keeps the base model's size even when the recipe leaves it open ...
    streaming = Recipe(epochs=1, batch_size=32, lr=0.05, data_path="streaming", decode_workers=0)
    update = run_update(base=first.model, classes=None, arch=None, method="mpt-kl", recipe=streaming, **common)
    assert update.model.spec.image_size == (24, 24) and update.inputs.data_path == STREAMING
    assert update.model.spec.mean == first.model.spec.mean
    everything = update.report.scopes.all
    assert len(update.ledger) == everything.negative_flips + everything.positive_flips
    # A report's thumbnails are the fitted evaluation images, in the ledger's order.
    none = thumbnails(update.inputs.evaluation, [], update.inputs.shape, 16)
    assert none.shape == (0, 3, 16, 16) and none.dtype == torch.uint8
    thumbs = thumbnails(update.inputs.evaluation, [5, 0], update.inputs.shape, 16)
    assert thumbs.shape == (2, 3, 16, 16) and thumbs.dtype == torch.uint8
    assert torch.equal(thumbs[1], thumbnail(update.inputs.evaluation[0][0], 16))
    # The raw split gives the same thumbnails: it is fitted on the way.
    assert torch.equal(thumbnails(update.data.evaluation, [5, 0], update.inputs.shape, 16), thumbs)
    # ... and refuses a recipe that asks for another.
    with pytest.raises(ValueError, match="keeps its base model's image size"):
        run_update(base=first.model, classes=None, arch=None, method="mpt-kl", recipe=Recipe(image_size=32), **common)


def test_first_version_of_mixed_sizes_needs_an_image_size(photos):
    with pytest.raises(DataError, match="image_size"):
        run_update(
            bundle=open_dataset(photos),
            base=None,
            classes=None,
            arch="small_cnn",
            method="independent",
            params=MethodParams(),
            recipe=Recipe(epochs=1),
            seed=0,
            device="cpu",
        )


def test_recipe_digest_of_old_recipes_is_unchanged_and_choices_are_checked():
    # The digest a default Recipe had before image_size, train_crop and data_path existed:
    # cached references stay valid.
    assert Recipe().digest() == "1b29a225fc8b81d5"
    assert Recipe(data_path="streaming", decode_workers=3).digest() == Recipe().digest()
    assert Recipe(image_size=32).digest() != Recipe().digest()
    with pytest.raises(ValueError, match="train_crop"):
        Recipe(train_crop="zoom")
    with pytest.raises(ValueError, match="data_path"):
        Recipe(data_path="disk")
    assert Recipe.from_dict({"crop_scale": [0.5, 1.0]}).crop_scale == (0.5, 1.0)


def test_files_of_one_size_load_into_memory_as_before(tmp_path):
    for split in ("train", "test"):
        for name in ("x", "y"):
            (tmp_path / split / name).mkdir(parents=True)
            save_photo(tmp_path / split / name / "0", np.full((6, 5), 40, dtype=np.uint8), "rgb-jpeg")
    bundle = load_dataset(tmp_path)
    assert isinstance(bundle.train, ImageSet) and bundle.train.shape == (3, 6, 5)
    assert isinstance(open_dataset(tmp_path).train, ImageFiles)
    decoded = image_to_tensor(decode_image(tmp_path / "train" / "x" / "0.jpg", channels=3))
    assert torch.equal(bundle.train.images[0], decoded)
