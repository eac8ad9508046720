import re
from pathlib import Path

import numpy as np
import pytest

from ablation.cli import main
from ablation.data.corpus import Dataset
from ablation.data.sources import LIBRIPHONE_CLASSES, export, from_utterances, load_dataset


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATION_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def libri(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [5, 8, 3, 9, 6]
    feats = [rng.standard_normal((t, 39)).astype(np.float32) for t in lengths]
    labels = [np.full(t, u % 2) for u, t in enumerate(lengths)]  # p00 on 14 frames, p01 on 17
    pool = from_utterances("hand", feats, labels, [f"1-2-{u}" for u in range(5)], LIBRIPHONE_CLASSES)
    test = from_utterances("hand/test", feats[:2], None, ["3-4-0", "3-4-1"], LIBRIPHONE_CLASSES)
    return export(Dataset("hand", pool, test), tmp_path / "libri")


def run(capsys, *argv):
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info(libri, capsys):
    code, out, _ = run(capsys, "info", "--data", f"libriphone:{libri}")
    assert code == 0
    assert "classes      2 of 41 present; most frequent p01 (54.8% of frames); rarest p00 (14 frames)" in out
    assert "label runs   5 runs; mean 6.2 frames, median 6; 100.0% shorter than 11 frames" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["train"], ["val"], ["test"])}
    assert int(rows["train"][1]) == 4 and int(rows["val"][1]) == 1 and int(rows["train"][2]) + int(rows["val"][2]) == 31
    assert rows["test"][1:3] == ["2", "13"] and rows["test"][-1] == "-"


def test_export_round_trip_and_refusal(libri, tmp_path, capsys):
    out_dir = tmp_path / "copy"
    code, out, _ = run(capsys, "export", "--data", f"libriphone:{libri}", "--out", str(out_dir))
    assert code == 0 and f"wrote 5 train and 2 test utterances of libriphone:{libri} to {out_dir}" in out
    a, b = load_dataset(f"libriphone:{libri}"), load_dataset(f"libriphone:{out_dir}")
    np.testing.assert_array_equal(a.pool.features, b.pool.features)
    assert a.pool.utt_ids == b.pool.utt_ids
    code, out, err = run(capsys, "export", "--data", f"libriphone:{libri}", "--out", str(out_dir))
    assert code == 2 and out == "" and err.count("\n") == 1 and "already exists and is not an empty folder" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "--data", "librphone:/x"], "unknown data spec 'librphone:/x' (did you mean 'libriphone'?)"),
        (["info", "--data", "libriphone:/no/such/folder"], "libriphone folder /no/such/folder does not exist"),
        (["export", "--data", "libriphone:/x"], "data export needs a destination; add --out DIR"),
    ],
)
def test_user_errors_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("ablation data: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_ceiling_needs_a_generated_corpus(libri, capsys):
    code, _, err = run(capsys, "ceiling", "--data", f"libriphone:{libri}")
    assert code == 2 and "has no known ceiling" in err


def test_generate_info_and_ceiling_on_synthphone(capsys, tmp_path):
    code, out, _ = run(capsys, "generate", "--data", "synthphone:tiny")
    ds = load_dataset("synthphone:tiny")
    assert code == 0 and f"{ds.pool.n_utts:,} utterances, {ds.pool.n_frames:,} frames" in out
    folder = out.strip().split("cached at ")[1]
    assert folder.startswith(str(tmp_path / "cache")) and (Path(folder) / "index.json").is_file()
    assert ds.fingerprint in out
    code, out, _ = run(capsys, "ceiling", "--data", "synthphone:tiny", "--n", "1,5")
    assert code == 0 and f"test {ds.test.ceiling():.4f}" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("class"))
    assert lines[header].split() == ["class", "frames", "train", "val", "test"]
    table = [line.split() for line in lines[header + 2 : header + 2 + ds.pool.n_classes + 1] if line]
    assert len(table) == ds.pool.n_classes
    counts = np.bincount(ds.pool.labels, minlength=ds.pool.n_classes)
    assert [int(row[1]) for row in table] == counts.tolist()


def test_ceiling_prints_the_information_ceiling_of_each_window(capsys):
    from ablation.data.ceiling import View, info_ceilings
    from ablation.data.info import split_corpora

    code, out, _ = run(capsys, "ceiling", "--data", "synthphone:tiny", "--n", "1,5")
    assert code == 0 and "upper bound" in out
    rows = {line.rsplit(None, 2)[0]: line.split()[-2:] for line in out.splitlines() if "window" in line or "whole" in line}
    parts = split_corpora(load_dataset("synthphone:tiny"))
    for label, view in (("1-frame window", View("window", 1)), ("5-frame window", View("window", 5)),
                        ("whole utterance", View("utterance"))):  # fmt: skip
        want = [f"{info_ceilings(parts[s], [view])[view]:.4f}" for s in ("val", "test")]
        assert rows[label] == want
    assert float(rows["1-frame window"][0]) < float(rows["5-frame window"][0]) < float(rows["whole utterance"][0])
    code, out, _ = run(capsys, "info", "--data", "synthphone:tiny")
    assert code == 0 and "ceiling      Bayes accuracy given the clean statics of the whole utterance" in out


@pytest.mark.parametrize("n", ["4", "0", "-3", "1,x"])
def test_ceiling_refuses_a_window_without_a_centre(capsys, n):
    code, out, err = run(capsys, "ceiling", "--data", "synthphone:tiny", "--n", n)
    assert code == 2 and out == "" and err.count("\n") == 1 and f"--n '{n}'" in err


def test_calibrate_writes_the_measured_block_into_the_readme(capsys, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- calibration:table -->\nold typed numbers\n<!-- /calibration:table -->\nrest\n")
    code, out, err = run(capsys, "calibrate", "--data", "synthphone:tiny", "--set", "train.epochs=1",
                         "--write", str(readme))  # fmt: skip
    assert code == 0, err
    text = readme.read_text()
    assert "old typed numbers" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    block = text.split("<!-- calibration:table -->\n")[1].split("\n<!-- /calibration:table -->")[0]
    assert block in out
    assert "`python -m ablation data calibrate --data synthphone:tiny --set train.epochs=1 --write`" in block
    assert "**`synthphone:tiny`**:" in block
    rows = [line for line in block.splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`mlp_sample`", "`mlp_strong`", "`lstm_window`", "`bilstm_utt`"]
    for r in rows:  # val acc below the input ceiling below the utterance ceiling, all measured
        val, _, own, utt = (float(c) for c in r.split("|")[3:7])
        assert 0 < val < 1 and own <= utt + 1e-9
    # the two kinds of split over ten seeds each, as the progress lines gave them, and Welch's test on them
    from scipy import stats

    accs = {k: [float(v) for v in re.search(rf"on {k} splits: \[(.*?)\]", err).group(1).split(", ")]
            for k in ("utterance", "speaker")}  # fmt: skip
    strong = float(rows[1].split("|")[3])
    assert len(accs["utterance"]) == len(accs["speaker"]) == 10 and abs(accs["utterance"][0] - strong) < 1e-3
    utt, spk = np.array(accs["utterance"]), np.array(accs["speaker"])
    p = stats.ttest_ind(spk, utt, equal_var=False).pvalue
    assert (f"utterance splits {utt.mean():.3f} (sd {utt.std(ddof=1):.3f}), speaker-disjoint splits "
            f"{spk.mean():.3f} (sd {spk.std(ddof=1):.3f}): {spk.mean() - utt.mean():+.3f}, Welch's p = {p:.2g}.") in block
    from ablation.calibration import corpus_stats

    share = corpus_stats("synthphone:tiny")["class 0 share"]
    stat = next([c.strip() for c in line.split("|")[1:-1]] for line in block.splitlines() if "class 0 share" in line)
    assert stat == ["class 0 share", f"{share:.3f}", "0.174", f"{share / 0.174 - 1:+.1%}"]


def test_calibrate_refuses_a_missing_readme_before_training(capsys, tmp_path):
    code, out, err = run(capsys, "calibrate", "--data", "synthphone:tiny", "--write", str(tmp_path / "nope.md"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "no such file" in err


def test_presets_writes_measured_sizes_ceilings_and_statistics_into_the_readme(capsys, tmp_path):
    from ablation.data import synthphone
    from ablation.data.info import segment_lengths

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- synthphone:presets -->\ntyped\n<!-- /synthphone:presets -->\nrest\n")
    code, out, err = run(capsys, "presets", "--presets", "tiny,tiny-v2", "--write", str(readme))
    assert code == 0, err
    text = readme.read_text()
    assert "typed" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    block = text.split("<!-- synthphone:presets -->\n")[1].split("\n<!-- /synthphone:presets -->")[0]
    assert block in out and "`python -m ablation data presets --presets tiny,tiny-v2 --write`" in block
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in block.splitlines()
            if r.startswith("| `tiny")}  # fmt: skip
    for name, version in (("tiny", "1"), ("tiny-v2", "2")):
        ds = synthphone.generate(synthphone.PRESETS[name])  # what the fresh process generated, again
        row = rows[f"`{name}`"]
        assert row[0] == version and row[1] == f"{ds.pool.n_utts} + {ds.test.n_utts}" and row[2] == "6"
        assert row[3] == f"{ds.pool.n_frames / 1e3:.1f} k + {ds.test.n_frames / 1e3:.1f} k"
        assert float(row[4].removesuffix(" s")) > 0 and float(row[5].removesuffix(" GB")) > 0
        assert row[6] == f"{ds.pool.ceiling():.3f} / {ds.test.ceiling():.3f}"
    stats = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in block.splitlines()[-9:]}
    pools = [synthphone.generate(synthphone.PRESETS[name]).pool for name in ("tiny", "tiny-v2")]  # both columns
    assert stats["class 0 share"] == ["17.4%"] + [f"{np.mean(p.labels == 0):.1%}" for p in pools]
    assert stats["label-run median"] == ["7"] + [f"{np.median(segment_lengths(p.labels, p.offsets)):,.0f}" for p in pools]
    assert stats["rarest class frames"] == ["1,344"] + [f"{np.bincount(p.labels, minlength=41).min():,}" for p in pools]
    assert stats["utterances per speaker"] == ["21.4", f"{32 / 6:.1f}", f"{32 / 6:.1f}"]


def test_presets_refuses_an_unknown_preset_before_generating(capsys, tmp_path):
    code, out, err = run(capsys, "presets", "--presets", "tiny,smal")
    assert code == 2 and out == "" and err.count("\n") == 1 and "unknown synthphone preset 'smal'" in err


@pytest.mark.parametrize("spec, says", [("synthphone:tiny,synthphone:smal", "unknown synthphone preset 'smal'"),
                                        ("synthphone:tiny,libriphone:/no/such/dir", "/no/such/dir does not exist")])
def test_calibrate_refuses_a_bad_second_corpus_before_training_the_first(capsys, spec, says):
    code, out, err = run(capsys, "calibrate", "--data", spec)
    assert code == 2 and out == "" and err.count("\n") == 1 and says in err and "measured" not in err
