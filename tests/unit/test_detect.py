"""Detectors: CAM boxes on real photos, box selection, the registry and its errors, torchvision
checkpoints made locally from randomly initialised models, and object regions' geometry."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.detect.base import Detection, DetectorOptions, box_iou, select
from searchapp.detect.registry import check_name, create_detector
from searchapp.errors import UnknownNameError, WeightsUnavailableError
from searchapp.ingest.load import load_image
from searchapp.ingest.regions import object_regions
from searchapp.records import FileStat
from tests.conftest import sample_image

CUP = (165, 15, 415, 245)  # the espresso cup in scikit-image's coffee photo, drawn by hand
ROCKET_BODY = (330, 250)  # a point on the rocket in scikit-image's rocket photo
TINY_DETECTOR = "ssdlite320_mobilenet_v3_large"  # the smallest torchvision COCO detector


@pytest.fixture(scope="module")
def cam():  # type: ignore[no-untyped-def]
    return create_detector("cam", DetectorOptions())


def test_cam_box_lands_on_the_coffee_cup(cam) -> None:  # type: ignore[no-untyped-def]
    detections = cam.detect([sample_image("coffee")])[0]
    assert detections, "no object found in the coffee photo"
    best = detections[0]
    assert best.label in {"espresso", "cup", "coffee mug"}
    assert box_iou(best.bbox, CUP) > 0.5


def test_cam_finds_the_rocket_among_the_towers(cam) -> None:  # type: ignore[no-untyped-def]
    detections = cam.detect([sample_image("rocket")])[0]
    x, y = ROCKET_BODY
    rockets = [d for d in detections if d.label in {"missile", "projectile, missile"}]
    assert any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in (d.bbox for d in rockets))
    assert len(detections) <= DetectorOptions().max_objects


def test_cam_boxes_stay_inside_odd_shaped_images(cam) -> None:  # type: ignore[no-untyped-def]
    panorama = sample_image("astronaut").resize((1500, 300))
    for image in (panorama, sample_image("coffee").resize((40, 30))):
        for x0, y0, x1, y1 in (d.bbox for d in cam.detect([image])[0]):
            assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height


def test_cam_with_the_classes_indexing_stored_skips_its_class_pass(  # type: ignore[no-untyped-def]
    cam, monkeypatch: pytest.MonkeyPatch
) -> None:
    coffee = sample_image("coffee")
    labels = cam.classes(coffee)
    assert labels[0][0] == "espresso"
    computed = cam.detect([coffee])[0]

    def no_class_pass(image: Image.Image) -> None:
        raise AssertionError("the class pass ran although the classes were given")

    monkeypatch.setattr(cam, "classes", no_class_pass)
    given = cam.detect([coffee], [labels])[0]
    assert [(d.label, d.bbox) for d in given] == [(d.label, d.bbox) for d in computed]
    assert cam.detect([coffee], [[("espresso", 0.01)]])[0] == []  # below the guessing floor


def test_feature_maps_on_onnx_runtime_match_pytorch_at_each_size(  # type: ignore[no-untyped-def]
    cnn_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from searchapp.encoders import feature_maps
    from searchapp.encoders.feature_maps import CELL, FeatureMaps, pass_input, pass_size

    assert pass_size(4032, 3024, 448) == (608, 448)  # whole cells: 597 px -> 19 cells
    assert pass_size(3000, 1000, 448) == (896, 288)  # a panorama capped at 2:1, 299 -> 288
    onnx, torch_maps = FeatureMaps(cnn_encoder.model), FeatureMaps(cnn_encoder.model, "torch")
    for name, side in (("coffee", 384), ("astronaut", 224)):
        pixels = pass_input(sample_image(name), side)
        assert pixels.shape[1] % CELL == 0 and pixels.shape[2] % CELL == 0
        cells = onnx(pixels)
        assert cells.shape == (1280, pixels.shape[1] // CELL, pixels.shape[2] // CELL)
        np.testing.assert_allclose(cells, torch_maps(pixels), atol=2e-3)
    assert onnx.use_onnx and len(onnx._sessions) == 2  # one session a size
    # past MAX_SESSIONS sizes, PyTorch runs the rest: a folder of every shape stays in memory
    monkeypatch.setattr(feature_maps, "MAX_SESSIONS", 2)
    pixels = pass_input(sample_image("rocket"), 224)
    np.testing.assert_allclose(onnx(pixels), torch_maps(pixels), atol=2e-3)
    assert len(onnx._sessions) == 2


def test_select_applies_area_limits_nms_and_the_cap() -> None:
    options = DetectorOptions(max_objects=2, min_area=0.01, max_area=0.7)
    found = [
        Detection((0, 0, 100, 100), "whole", 0.99),  # the whole photo: the scene's job
        Detection((0, 0, 5, 5), "speck", 0.98),  # 0.25%: too few pixels
        Detection((10, 10, 50, 50), "a", 0.9),
        Detection((12, 12, 52, 52), "a-again", 0.8),  # overlaps "a": suppressed
        Detection((60, 60, 90, 90), "b", 0.7),
        Detection((60, 10, 90, 40), "c", 0.6),  # beyond the cap
    ]
    kept = select(found, (100, 100), options)
    assert [d.label for d in kept] == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("yolo", "valid: cam, torchvision:<name>, none"),
        ("cam:big", "takes no model name"),
        ("torchvision:", "name the model"),
        ("torchvision:resnet50", "valid: torchvision:fasterrcnn"),
    ],
)
def test_registry_names_what_is_valid(name: str, message: str) -> None:
    with pytest.raises(UnknownNameError, match=message):
        create_detector(name, DetectorOptions())


def test_none_turns_detection_off_and_names_are_checked_without_loading() -> None:
    assert create_detector("none", DetectorOptions()) is None
    assert check_name("torchvision:anything") == "torchvision:anything"
    with pytest.raises(UnknownNameError):
        check_name("detr")


@pytest.fixture(scope="module")
def random_detector_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised torchvision detector, saved as its state dict (the hub's layout)."""
    import torch
    from torchvision.models import get_model

    torch.manual_seed(0)
    model = get_model(TINY_DETECTOR, weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path_factory.mktemp("detector") / "random.pth"
    torch.save(model.state_dict(), path)
    return path


def test_torchvision_detector_loads_a_local_file_and_labels_with_coco_classes(
    random_detector_checkpoint: Path,
) -> None:
    from torchvision.models import get_model_weights

    options = DetectorOptions(weights=random_detector_checkpoint, min_score=0.0, min_area=0.0)
    detector = create_detector(f"torchvision:{TINY_DETECTOR}", options)
    assert detector is not None
    image = sample_image("coffee")
    detections = detector.detect([image, image.resize((200, 120))])
    assert len(detections) == 2
    coco = set(get_model_weights(TINY_DETECTOR).DEFAULT.meta["categories"])
    assert detections[0], "a score threshold of 0 keeps the random model's boxes"
    for det in detections[0]:
        assert det.label in coco
        x0, y0, x1, y1 = det.bbox
        assert 0 <= x0 <= x1 <= image.width and 0 <= y0 <= y1 <= image.height


def test_torchvision_weights_come_from_the_hub_cache(
    random_detector_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from torchvision.models import get_model_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name = f"torchvision:{TINY_DETECTOR}"
    with pytest.raises(WeightsUnavailableError, match="--detector-weights FILE") as missing:
        create_detector(name, DetectorOptions())
    url_file = Path(get_model_weights(TINY_DETECTOR).DEFAULT.url).name
    cached = tmp_path / "hub" / "checkpoints" / url_file
    assert str(cached) in str(missing.value)
    cached.parent.mkdir(parents=True)
    shutil.copy(random_detector_checkpoint, cached)
    assert create_detector(name, DetectorOptions()) is not None


def test_a_checkpoint_of_another_model_is_refused_by_name(
    random_detector_checkpoint: Path, tmp_path: Path
) -> None:
    wrong = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        create_detector(wrong, DetectorOptions(weights=random_detector_checkpoint))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match=r"garbage\.pth"):
        create_detector(f"torchvision:{TINY_DETECTOR}", DetectorOptions(weights=garbage))


def test_object_regions_of_an_exif_rotated_reduced_photo_are_in_displayed_pixels(
    tmp_path: Path,
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1200x800 landscape, displayed 800x1200 portrait
    stored = sample_image("coffee").resize((1200, 800))
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    st = os.stat(path)
    loaded = load_image(FileStat(str(path), st.st_size, st.st_mtime_ns), min_side=300)
    assert (loaded.meta.width, loaded.meta.height) == (800, 1200)
    assert loaded.scale > 1  # decoded reduced: detections are in decoded pixels
    decoded_box = (50, 100, 150, 160)  # wide: the embedded square must hold all of it
    cut = object_regions(loaded, [Detection(decoded_box, "cup", 0.9)])[0]
    assert cut.kind == "object" and cut.label == "cup" and cut.label_score == 0.9
    expected = tuple(round(v * loaded.scale) for v in decoded_box)
    assert all(abs(a - b) <= 1 for a, b in zip(cut.bbox, expected, strict=True))
    assert cut.image.width == cut.image.height == 100
    displayed = stored.transpose(Image.Transpose.ROTATE_270)
    x0, y0, x1, y1 = cut.bbox
    grow = (x1 - x0 - (y1 - y0)) // 2  # the square reaches above and below the box
    wanted = np.asarray(displayed.crop((x0, y0 - grow, x1, y1 + grow)))
    got = np.asarray(cut.image.resize(wanted.shape[1::-1]), dtype=np.float32)
    assert np.abs(wanted.astype(np.float32) - got).mean() < 8


def test_torchvision_detector_runs_a_big_batch_a_few_photos_a_pass(
    random_detector_checkpoint: Path,
) -> None:
    """An index batch (256 photos on a GPU) in one detector pass took tens of GB; a pass takes
    DETECT_PASS photos, and the answers keep the photos' order."""
    from searchapp.detect.torchvision_detector import DETECT_PASS

    options = DetectorOptions(weights=random_detector_checkpoint, min_score=0.0, min_area=0.0)
    detector = create_detector(f"torchvision:{TINY_DETECTOR}", options)
    assert detector is not None
    model, sizes = detector.model, []  # type: ignore[attr-defined]

    def counted(tensors: list) -> list:  # type: ignore[type-arg]
        sizes.append(len(tensors))
        return model(tensors)

    detector.model = counted  # type: ignore[attr-defined]
    names = ["coffee", "chelsea", "astronaut"] * 3
    images = [sample_image(name).resize((160, 120)) for name in names]
    together = detector.detect(images)
    assert sizes == [DETECT_PASS, DETECT_PASS, len(images) - 2 * DETECT_PASS]
    by_pass = [
        found
        for start in range(0, len(images), DETECT_PASS)
        for found in detector.detect(images[start : start + DETECT_PASS])
    ]
    assert together == by_pass and all(together)
