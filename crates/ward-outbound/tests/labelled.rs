//! Precision and recall of the standard policy on the labelled reminder set
//! (`tests/data/labelled.tsv`). The figures in docs/outbound-policy.md come from:
//! `cargo test -p ward-outbound --test labelled -- --nocapture`

use std::collections::BTreeMap;

use ward_outbound::ContentPolicy;

const LABELLED: &str = include_str!("data/labelled.tsv");

/// Floors the set must keep; they sit at what the policy reaches today, so a regression fails.
const MIN_PRECISION: f64 = 0.98;
const MIN_RECALL: f64 = 0.97;

struct Example<'a> {
    /// After the "# Held-out batch" line: written once the lexicons were frozen.
    held_out: bool,
    blocked: bool,
    category: &'a str,
    exempt: Vec<&'a str>,
    text: &'a str,
}

fn examples() -> Vec<Example<'static>> {
    let mut held_out = false;
    let mut out = Vec::new();
    for line in LABELLED.lines() {
        held_out |= line.starts_with("# Held-out batch");
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 4, "four columns expected: {line:?}");
        let blocked = match cols[0] {
            "block" => true,
            "allow" => false,
            other => panic!("unknown label {other:?}"),
        };
        let exempt = if cols[2] == "-" { Vec::new() } else { cols[2].split(';').collect() };
        out.push(Example { held_out, blocked, category: cols[1], exempt, text: cols[3] });
    }
    out
}

#[test]
fn precision_and_recall_meet_the_floors() {
    let examples = examples();
    assert!(examples.len() >= 200, "only {} examples", examples.len());
    let policy = ContentPolicy::standard();
    let (mut tp, mut fp, mut tn, mut fn_) = (0u32, 0u32, 0u32, 0u32);
    // The same counts for the held-out batch alone.
    let mut held = [0u32; 4];
    let mut per_category: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for ex in &examples {
        let verdict = policy.check(ex.text, &ex.exempt);
        let predicted = !verdict.is_allowed();
        if ex.held_out {
            held[usize::from(ex.blocked) * 2 + usize::from(predicted)] += 1;
        }
        match (ex.blocked, predicted) {
            (true, true) => tp += 1,
            (false, true) => {
                fp += 1;
                let why: Vec<String> = verdict.findings().iter().map(ToString::to_string).collect();
                println!("false positive: {:?} -> {}", ex.text, why.join("; "));
            }
            (false, false) => tn += 1,
            (true, false) => {
                fn_ += 1;
                println!("false negative [{}]: {:?}", ex.category, ex.text);
            }
        }
        if ex.blocked {
            let entry = per_category.entry(ex.category).or_default();
            entry.1 += 1;
            if predicted {
                entry.0 += 1;
            }
        }
    }
    let precision = f64::from(tp) / f64::from(tp + fp);
    let recall = f64::from(tp) / f64::from(tp + fn_);
    println!("examples: {} ({} block, {} allow)", examples.len(), tp + fn_, tn + fp);
    println!("confusion: TP {tp}  FP {fp}  TN {tn}  FN {fn_}");
    println!("precision {precision:.3}  recall {recall:.3}");
    let [h_tn, h_fp, h_fn, h_tp] = held;
    println!(
        "held-out batch: TP {h_tp}  FP {h_fp}  TN {h_tn}  FN {h_fn}  precision {:.3}  recall {:.3}",
        f64::from(h_tp) / f64::from(h_tp + h_fp),
        f64::from(h_tp) / f64::from(h_tp + h_fn)
    );
    for (category, (hit, total)) in &per_category {
        println!("  recall {category:<20} {hit}/{total}");
    }
    assert!(precision >= MIN_PRECISION, "precision {precision:.3} < {MIN_PRECISION}");
    assert!(recall >= MIN_RECALL, "recall {recall:.3} < {MIN_RECALL}");
}
