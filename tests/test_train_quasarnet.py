"""QuasarNET training: data selection, split by object, a tiny fit, and the `train quasarnet` command."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from qsopipe.models import train_quasarnet as tq
from qsopipe.models.boxes import training_targets
from qsopipe.pipeline.constants import QN_LINES, QUASAR_CLASSES
from qsopipe.pipeline.grids import QN_DLOGLAM, QN_LOGLAM_MIN, QN_NBINS

qn = pytest.importorskip("qsopipe.models.quasarnet")


def synthetic_spectra(n, seed=0):
    """LabelledSpectra with noise plus Gaussian emission lines at the quasars' line positions."""
    rng = np.random.default_rng(seed)
    class_person = rng.choice([1, 3, 30, 4], size=n)
    is_qso = np.isin(class_person, QUASAR_CLASSES)
    z = np.where(is_qso, rng.uniform(0.3, 3.5, n), rng.uniform(0, 0.3, n))
    pixel = np.arange(QN_NBINS)
    x = rng.normal(0, 0.3, (n, QN_NBINS))
    for _, rest in QN_LINES:
        centre = (np.log10((1 + z) * rest) - QN_LOGLAM_MIN) / QN_DLOGLAM
        x += np.where(is_qso[:, None], 3 * np.exp(-0.5 * ((pixel - centre[:, None]) / 3) ** 2), 0)
    bal = (class_person == 30).astype(np.int16)
    return tq.LabelledSpectra(
        x=x.astype(np.float32), prep_flag=np.zeros(n, np.int32), plate=np.full(n, 7000, np.int32),
        mjd=np.full(n, 56000, np.int32), fiberid=np.arange(1, n + 1, dtype=np.int32),
        thing_id=rng.integers(0, n // 2, n).astype(np.int64), class_person=class_person.astype(np.int16),
        z_vi=z, z_conf_person=np.full(n, 3, np.int16), bal_flag_vi=bal,
        bi_civ=np.where(bal > 0, 1000.0, 0.0))


def test_commands_import_without_tensorflow():
    code = ("import sys, qsopipe.models.train, qsopipe.models.train_quasarnet, qsopipe.models.legacy; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_help_lists_quasarnet():
    from qsopipe.pipeline.cli import cli

    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0 and "quasarnet" in result.output


def test_training_rows():
    prep_flag = np.array([0, 1, 0, 0, 0, 0])
    class_person = np.array([3, 3, 0, -1, 1, 30])
    z_conf = np.array([3, 3, 3, 3, 2, 4])
    assert tq.training_rows(prep_flag, class_person, z_conf).tolist() == [True, False, True, False, False, True]


def test_split_by_object_keeps_objects_whole():
    thing_id = np.array([10, 10, 11, 12, 12, 12, -1, -1, 13, 14] * 5)
    fiberid = np.arange(len(thing_id))
    ids = tq.object_ids(thing_id, np.full(50, 7000), np.full(50, 56000), fiberid)
    assert len(np.unique(ids[thing_id == -1])) == 10          # each fiber without THING_ID alone
    validation = tq.split_by_object(ids, 0.3, seed=1)
    assert 0 < validation.sum() < len(ids)
    for object_id in np.unique(ids):
        assert len(set(validation[ids == object_id])) == 1
    assert not tq.split_by_object(ids, 0.0).any()


def test_tiny_training_lowers_the_loss(tmp_path):
    data = synthetic_spectra(512)
    targets, weights = training_targets(data.class_person, data.z_vi, data.bal_flag_vi, data.bi_civ)
    model = qn.compile_quasarnet(qn.build_quasarnet(filters=4, dense_units=16), learning_rate=3e-3)
    history = tq.fit_quasarnet(model, (data.x, targets, weights), None, tq.output_paths(tmp_path / "m.keras"),
                               epochs=2, batch_size=32)
    assert len(history["loss"]) == 2
    assert history["loss"][1] < history["loss"][0]


def test_command_trains_checkpoints_and_resumes(tmp_path, monkeypatch):
    from qsopipe.pipeline.cli import cli

    data = synthetic_spectra(300, seed=1)
    data.prep_flag[:10] = 1                     # dropped: bad input
    data.class_person[10:20] = 0                # kept: sky fibers are negatives
    monkeypatch.setattr(tq, "read_labelled_spectra", lambda spectra_dirs, truth: data)
    out = tmp_path / "run" / "qn.keras"
    args = ["train", "quasarnet", "--sim", str(tmp_path), "--out", str(out), "--filters", "4",
            "--dense-units", "8", "--batch-size", "64", "--seed", "3"]
    result = CliRunner().invoke(cli, args + ["--epochs", "1"])
    assert result.exit_code == 0, result.output
    paths = tq.output_paths(out)
    for key in ("model", "checkpoint", "state", "history", "plot"):
        assert paths[key].is_file(), key
    assert json.loads(paths["state"].read_text())["epoch"] == 1

    result = CliRunner().invoke(cli, args + ["--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    history = json.loads(paths["history"].read_text())
    assert len(history["loss"]) == len(history["val_loss"]) == 2

    import keras
    model = keras.models.load_model(out)
    assert model.get_layer("conv_1").filters == 4


def test_command_needs_one_kind_of_input(tmp_path):
    from qsopipe.pipeline.cli import cli

    result = CliRunner().invoke(cli, ["train", "quasarnet", "--out", str(tmp_path / "m.keras")])
    assert result.exit_code != 0 and "--sim" in result.output


def test_shards_give_the_labelled_spectra_of_their_plates(tmp_path):
    from qsopipe.pipeline.cli import cli

    sim = tmp_path / "sim"
    for args in (["simulate", "--out", str(sim), "--plates", "2", "--fibers", "40", "--seed", "5"],
                 ["preprocess", str(sim / "spectra"), "--out", str(tmp_path / "shards")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    truth = [sim / "truth.fits"]
    from_plates = tq.read_labelled_spectra([sim / "spectra"], truth)
    from_shards = tq.read_labelled_shards([tmp_path / "shards"], truth)
    assert len(from_shards.x) == 80
    for name, value in vars(from_plates).items():
        np.testing.assert_array_equal(getattr(from_shards, name), value, err_msg=name)
    assert (from_shards.class_person >= 0).sum() > 40


def test_init_starts_from_the_given_weights(tmp_path, monkeypatch):
    from qsopipe.pipeline.cli import cli

    data = synthetic_spectra(200, seed=2)
    monkeypatch.setattr(tq, "read_labelled_shards", lambda shard_dirs, truth_paths: data)
    first, second = tmp_path / "first.keras", tmp_path / "second.keras"
    common = ["train", "quasarnet", "--shards", str(tmp_path), "--truth", __file__, "--filters", "4",
              "--dense-units", "8", "--batch-size", "64", "--epochs", "1"]
    assert CliRunner().invoke(cli, common + ["--out", str(first), "--seed", "1"]).exit_code == 0
    result = CliRunner().invoke(cli, common + ["--out", str(second), "--seed", "9", "--init", str(first),
                                               "--learning-rate", "0"])
    assert result.exit_code == 0, result.output

    import keras
    kernels = [keras.models.load_model(path).get_layer("conv_1").get_weights()[0] for path in (first, second)]
    np.testing.assert_array_equal(kernels[0], kernels[1])
    result = CliRunner().invoke(cli, common + ["--out", str(second), "--init", str(first), "--resume"])
    assert result.exit_code != 0 and "--init" in result.output
