//! Isolation-forest quality on the five ODDS sets of the shared datasets: by PyOD's protocol
//! (the same numpy splits, standardised, 100 trees of 256 rows, mean of 10 splits), the ROC-AUC
//! lands within 0.02 of PyOD's published IForest column on every set.
//!
//! Each split's ROC-AUC is averaged over 10 forests. With one forest per split, the 10-split
//! mean still varies with the forest seeds (standard deviation 0.007 on glass, for scikit-learn
//! as for this forest), and the published figure is one such draw; averaging compares the
//! forest's expected ROC-AUC on the published splits instead (see `docs/detection.md`).

mod common;

// The protocol lives in the example, so the test checks exactly what the example prints.
#[allow(dead_code)]
#[path = "../examples/odds.rs"]
mod odds;

use common::data;

#[test]
fn splits_are_numpys() {
    // numpy: np.random.RandomState(seed).permutation(10)
    assert_eq!(odds::numpy_permutation(10, 0), [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
    assert_eq!(odds::numpy_permutation(10, 1), [2, 9, 6, 4, 0, 3, 1, 7, 8, 5]);
    assert_eq!(odds::numpy_permutation(10, 7), [8, 5, 0, 2, 1, 9, 7, 3, 6, 4]);
    // scikit-learn: train_test_split(np.arange(214), test_size=0.4, random_state=RandomState(3))
    let (train, test) = odds::split(214, 3);
    assert_eq!((train.len(), test.len()), (128, 86));
    assert_eq!(test[..12], [146, 25, 163, 108, 83, 197, 211, 77, 34, 203, 121, 137]);
    assert_eq!(train[..5], [24, 89, 103, 8, 53]);
}

#[test]
fn roc_auc_counts_ties_as_half() {
    assert_eq!(odds::roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
    assert_eq!(odds::roc_auc(&[0.5, 0.5, 0.5], &[false, true, false]), Some(0.5));
    assert_eq!(odds::roc_auc(&[0.5, 0.7], &[true, true]), None);
}

#[test]
fn auc_is_within_002_of_published_iforest() {
    let published = odds::published_iforest(&data("odds/pyod_published_roc.csv")).expect("published table");
    let mut report = Vec::new();
    for name in ["cardio", "glass", "ionosphere", "pima", "wbc"] {
        let dataset = odds::read_odds(&data(&format!("odds/{name}.csv"))).expect("readable data set");
        let (aucs, skipped) = odds::evaluate(&dataset, 10, 10).expect("evaluates");
        assert_eq!(skipped, 0, "{name}: every split of the published protocol holds both classes");
        let (mean, _) = odds::mean_sd(&aucs);
        let reference = published[name];
        report.push(format!("{name}: {mean:.4} vs {reference:.4}"));
        assert!((mean - reference).abs() <= 0.02, "{name}: ROC-AUC {mean:.4}, published {reference:.4}");
    }
    eprintln!("{}", report.join("\n"));
}
