"""Sample grids and loss curves: layout, value mapping, PNG round trips, atomic writes."""

import csv
import os

import numpy as np
import pytest
import torch

from gankernels.images import atomic_write, make_grid, plot_losses, save_grid, smooth

Image = pytest.importorskip("PIL.Image", reason="Pillow writes the PNG files")


def test_grid_layout_and_padding():
    images = torch.zeros(5, 3, 4, 6, dtype=torch.uint8)
    grid = make_grid(images, nrow=2, padding=1, pad_value=7)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 5 + 1, 2 * 7 + 1, 3)
    assert grid[0].min() == 7 and grid[:, 0].max() == 7  # border
    assert grid[1:5, 1:7].max() == 0  # first cell
    assert grid[11:15, 8:14].min() == 7  # the sixth cell is empty
    assert make_grid(images).shape == (2 * 6 + 2, 3 * 8 + 2, 3)  # square-ish by default
    assert make_grid(images, nrow=10, padding=0).shape == (4, 30, 3)


def test_grid_maps_model_range_to_bytes():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0]).view(6, 1, 1, 1)
    grid = make_grid(x, nrow=6, padding=0)
    assert grid.shape == (1, 6, 1)
    assert grid[0, :, 0].tolist() == [0, 64, 128, 191, 255, 255]
    # uint8 is taken as is, the cell order is row-major, channels land last
    rgb = torch.arange(4 * 3, dtype=torch.uint8).view(4, 3, 1, 1)
    grid = make_grid(rgb, nrow=2, padding=0)
    assert grid.tolist() == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]
    assert make_grid(np.ones((2, 2), np.float64)).shape == (6, 6, 1)  # one image, no batch


@pytest.mark.parametrize(
    "images, error",
    [
        (torch.zeros(0, 1, 4, 4), "no images"),
        (torch.zeros(2, 2, 4, 4), "1 or 3 channels"),
        (torch.zeros(2, 1, 1, 4, 4), "expected images"),
    ],
)
def test_grid_rejects_bad_batches(images, error):
    with pytest.raises(ValueError, match=error):
        make_grid(images)


def test_grid_rejects_bad_arguments():
    images = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="nrow"):
        make_grid(images, nrow=0)
    with pytest.raises(ValueError, match="padding"):
        make_grid(images, padding=-1)
    with pytest.raises(ValueError, match="pad_value"):
        make_grid(images, pad_value=300)
    with pytest.raises(TypeError, match="uint8 or float"):
        make_grid(np.zeros((1, 1, 2, 2), np.int32))


def test_save_grid_round_trip_grey(tmp_path):
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    path = save_grid(images, tmp_path / "deep" / "er" / "grid.png", nrow=3, scale=1)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "L"
        read = np.asarray(png)
    assert np.array_equal(read, make_grid(images, nrow=3)[..., 0])
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left


def test_save_grid_scales_up_with_nearest(tmp_path):
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    grid = make_grid(images, nrow=2)
    path = save_grid(images, tmp_path / "rgb.png", nrow=2, scale=3)
    with Image.open(path) as png:
        assert png.mode == "RGB"
        read = np.asarray(png)
    assert read.shape == (grid.shape[0] * 3, grid.shape[1] * 3, 3)
    assert np.array_equal(read[::3, ::3], grid) and np.array_equal(read[2::3, 1::3], grid)
    # automatic scale: 8-pixel cells are enlarged 8x, 28-pixel cells 3x
    with Image.open(save_grid(images, tmp_path / "auto.png", nrow=2)) as png:
        assert png.size == (grid.shape[1] * 8, grid.shape[0] * 8)
    digits = torch.zeros(1, 1, 28, 28)
    with Image.open(save_grid(digits, tmp_path / "d.png", padding=0)) as png:
        assert png.size == (84, 84)
    with pytest.raises(ValueError, match="scale"):
        save_grid(images, tmp_path / "x.png", scale=0)


def test_save_grid_replaces_existing_file(tmp_path):
    path = tmp_path / "g.png"
    path.write_bytes(b"old")
    save_grid(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), path, scale=1)
    with Image.open(path) as png:
        assert png.size == (6, 6)


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "keep.png"
    path.write_bytes(b"complete")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"complete" and os.listdir(tmp_path) == ["keep.png"]


def test_smooth_is_a_debiased_moving_average():
    values = np.array([2.0, np.nan, 4.0, 4.0])
    out = smooth(values, 0.5)
    assert out[0] == 2.0 and np.isnan(out[1])
    assert out[2] == pytest.approx((0.25 * 2 + 0.5 * 4) / 0.75)
    assert np.array_equal(smooth(values, 0.0)[[0, 2, 3]], values[[0, 2, 3]])


def _write_log(path, steps):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss_d", "loss_g", "lr", "fid", "note"])
        for step in range(steps):
            fid = f"{50 - step:.1f}" if step % 10 == 0 else ""
            writer.writerow([step, 1 / (step + 1), 0.5 + 0.1 * np.sin(step), 2e-4, fid, "ok"])


def test_plot_losses_from_csv(tmp_path):
    log = tmp_path / "log.csv"
    _write_log(log, 40)
    out = plot_losses(log, tmp_path / "plots" / "losses.png")
    with Image.open(out) as png:
        assert png.format == "PNG"
        width, height = png.size
    assert width > 300 and height > 600  # three panels: losses, lr, fid
    assert sorted(os.listdir(out.parent)) == ["losses.png"]


def test_plot_losses_from_dict_and_errors(tmp_path):
    history = {"loss_d": [1.0, 0.8, 0.7], "loss_g": [2.0, 1.5, 1.4]}
    out = plot_losses(history, tmp_path / "dict.png", columns=["loss_g"])
    with Image.open(out) as png:
        assert png.size[1] < 400  # one panel
    with pytest.raises(ValueError, match="no numeric column 'loss_x'"):
        plot_losses(history, tmp_path / "bad.png", columns=["loss_x"])
    with pytest.raises(ValueError, match="smoothing"):
        plot_losses(history, tmp_path / "bad.png", smoothing=1.0)
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_losses({"step": [1, 2]}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
