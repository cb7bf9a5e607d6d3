"""UA / WA / F1 through torchmetrics, checked against hand-counted values."""

import pytest

from emorl.metrics import classification_metrics, plot_confusion

LABELS = ["neutral", "joy", "anger"]


def test_metrics_against_hand_counts():
    targets = ["neutral"] * 4 + ["joy"] * 2 + ["anger"] * 2
    preds = ["neutral", "neutral", "joy", None, "joy", "anger", "anger", "anger"]
    m = classification_metrics(preds, targets, LABELS)
    # recalls: neutral 2/4, joy 1/2, anger 2/2 -> UA = (0.5 + 0.5 + 1) / 3
    assert m["ua"] == pytest.approx(2 / 3)
    assert m["wa"] == pytest.approx(5 / 8)
    # precision: neutral 2/2, joy 1/2, anger 2/3; F1 = 2PR/(P+R)
    f1 = [2 * 1 * 0.5 / 1.5, 2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1 / (5 / 3)]
    assert m["f1"] == pytest.approx(sum(f1) / 3)
    assert m["unparsed_rate"] == pytest.approx(1 / 8)
    assert m["recall"] == {"neutral": 0.5, "joy": 0.5, "anger": 1.0}
    assert m["predicted"] == {"neutral": 2, "joy": 2, "anger": 3, "unparsed": 1}
    assert m["confusion"][0] == [2, 1, 0, 1]  # gold neutral: 2 neutral, 1 joy, 1 unparsed


def test_unparsed_answers_count_as_wrong():
    targets = ["joy", "joy"]
    assert classification_metrics([None, None], targets, LABELS)["wa"] == 0.0
    assert classification_metrics(["joy", None], targets, LABELS)["ua"] == pytest.approx(0.5)


def test_a_model_that_predicts_one_class_gets_chance_ua_but_high_wa():
    targets = ["neutral"] * 8 + ["joy", "anger"]
    m = classification_metrics(["neutral"] * 10, targets, LABELS)
    assert m["wa"] == pytest.approx(0.8)
    assert m["ua"] == pytest.approx(1 / 3)


def test_the_confusion_image_shows_the_matrix_it_is_given(tmp_path):
    from matplotlib.image import imread

    right = classification_metrics(["joy", "joy"], ["joy", "joy"], LABELS)
    wrong = classification_metrics(["anger", "anger"], ["joy", "joy"], LABELS)
    images = [imread(plot_confusion(m["confusion"], LABELS, tmp_path / f"{i}.png")) for i, m in enumerate((right, wrong))]
    assert images[0].shape == images[1].shape and images[0].ndim == 3  # an image, the same layout
    again = imread(plot_confusion(right["confusion"], LABELS, tmp_path / "again.png"))
    assert (again == images[0]).all()  # the same matrix draws the same image
    assert (images[0] != images[1]).any(axis=-1).mean() > 0.001  # another matrix draws other cells


@pytest.mark.parametrize("seed", range(5))
def test_ua_and_macro_f1_equal_scikit_learns_on_random_predictions(seed):
    """UA is balanced accuracy over the classes present; F1 is the macro mean over every label.

    The random predictions include unparsed answers (None) and a label no target has ("surprise"):
    a predicted-but-absent class scores F1 0 and lowers the macro mean, as in scikit-learn.
    """
    sklearn = pytest.importorskip("sklearn.metrics")
    import random

    labels = ["neutral", "joy", "anger", "surprise"]
    rng = random.Random(seed)
    targets = [rng.choice(labels[:3]) for _ in range(60)]  # surprise never the gold label
    preds = [rng.choice([*labels, None]) for _ in range(60)]
    assert "surprise" in preds and "surprise" not in targets
    m = classification_metrics(preds, targets, labels)
    y_pred = ["(unparsed)" if p is None else p for p in preds]
    assert m["f1"] == pytest.approx(sklearn.f1_score(targets, y_pred, average="macro", labels=labels, zero_division=0))
    assert m["ua"] == pytest.approx(sklearn.balanced_accuracy_score(targets, y_pred))
    assert m["wa"] == pytest.approx(sklearn.accuracy_score(targets, y_pred))
