//! Generalizations that bring the risk to the threshold, searched over a
//! small lattice.
//!
//! Each quasi-identifier has a hierarchy of levels, 0 being "as released":
//!
//! * age: 5-, 10-, 20-year bands, then dropped (levels 1 to 4);
//! * study-date: month, then year (dates are never dropped: the other dates
//!   of an object would still give them away; `dates` truncates them all);
//! * sex, modality: kept as released;
//! * every other attribute: dropped (level 1).
//!
//! A node of the lattice picks a level for each; only quasi-identifiers
//! that have a value in some record take part. Information loss is the
//! mean, over all quasi-identifiers in use, of level / height (0 for
//! those that cannot be generalized): 0 is the release as is, 1 everything
//! at its top. When the lattice has at most [`EXHAUSTIVE_NODES`] nodes (and
//! nodes × records is at most [`EXHAUSTIVE_WORK`]) every node is measured
//! and the suggestions are the least-loss nodes that reach the threshold and
//! have no generalized-less node that does (ties: lower max risk, then
//! larger k, then the lattice order). When no node reaches it, up to 3
//! nodes that come closer than the release are listed (fewest records above
//! the threshold, then lowest average risk, then lowest loss), flagged as
//! not reaching it. Otherwise (a large lattice) a greedy climb raises, one
//! step at a time, the level that leaves the fewest records above the
//! threshold (ties: lower average risk, then lower loss) until the
//! threshold is reached or nothing is left to raise.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::collect::Record;
use crate::measure::{measure, Measures};
use crate::population::{Population, SET_SEP};
use crate::quasi::{Quasi, RecipeEffect};

/// Largest lattice searched exhaustively.
pub const EXHAUSTIVE_NODES: usize = 20_000;
/// Largest nodes × records searched exhaustively.
pub const EXHAUSTIVE_WORK: usize = 20_000_000;
/// How many suggestions are reported.
pub const MAX_SUGGESTIONS: usize = 5;

/// One suggested generalization and what it achieves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// What changes, per quasi-identifier (those left as released are not
    /// listed).
    pub changes: Vec<String>,
    /// Smallest class afterwards.
    pub k: usize,
    /// Highest record risk afterwards (the measure the threshold applies to).
    pub max_risk: f64,
    /// Average record risk afterwards.
    pub avg_risk: f64,
    /// Records still above the threshold.
    pub records_at_risk: usize,
    /// Information loss, 0 (none) to 1.
    pub information_loss: f64,
    /// Whether the threshold is reached.
    pub meets_threshold: bool,
    /// The recipe section that applies it (`veil deid --recipe`).
    pub recipe: String,
}

/// The search and its results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Search {
    /// `exhaustive`, `greedy`, or `none` (the release already meets the
    /// threshold).
    pub method: &'static str,
    /// Nodes of the lattice measured.
    pub nodes_evaluated: usize,
    /// Suggestions, best first. When none reaches the threshold, up to 3
    /// nodes that come closer than the release (fewer records above it,
    /// then a lower average risk), with `meets_threshold` false; empty when
    /// no generalization helps.
    pub suggestions: Vec<Suggestion>,
}

/// Records and population with every (quasi, level) value interned, so a
/// node is measured with integer keys.
struct Table {
    /// ids[q][level][record]
    ids: Vec<Vec<Vec<u32>>>,
    /// pop[q][level][row]
    pop: Option<Vec<Vec<Vec<u32>>>>,
    counts: Vec<u64>,
    heights: Vec<u8>,
}

fn gen_set(q: &Quasi, set: &BTreeSet<String>, level: u8) -> String {
    let g: BTreeSet<String> = set.iter().filter_map(|v| q.generalize(v, level)).collect();
    g.into_iter().collect::<Vec<_>>().join(SET_SEP)
}

impl Table {
    fn new(quasi: &[Quasi], records: &[Record], population: Option<&Population>) -> Table {
        let mut ids = Vec::new();
        let mut pop = population.map(|_| Vec::new());
        for (qi, q) in quasi.iter().enumerate() {
            let mut intern: HashMap<String, u32> = HashMap::new();
            let mut id = |s: String| {
                let next = intern.len() as u32;
                *intern.entry(s).or_insert(next)
            };
            let mut per_level = Vec::new();
            let mut pop_level = Vec::new();
            for level in 0..=q.height() {
                per_level.push(
                    records
                        .iter()
                        .map(|r| id(gen_set(q, &r.values[qi], level)))
                        .collect(),
                );
                if let Some(p) = population {
                    pop_level.push(
                        p.rows
                            .iter()
                            .map(|(v, _)| id(gen_set(q, &v[qi], level)))
                            .collect(),
                    );
                }
            }
            ids.push(per_level);
            if let Some(p) = pop.as_mut() {
                p.push(pop_level);
            }
        }
        Table {
            ids,
            pop,
            counts: population.map_or_else(Vec::new, |p| p.rows.iter().map(|r| r.1).collect()),
            heights: quasi.iter().map(Quasi::height).collect(),
        }
    }

    fn measure(&self, levels: &[u8]) -> Measures {
        let n = self.ids.first().map_or(0, |q| q[0].len());
        let keys: Vec<Vec<u32>> = (0..n)
            .map(|r| {
                self.ids
                    .iter()
                    .zip(levels)
                    .map(|(q, &l)| q[l as usize][r])
                    .collect()
            })
            .collect();
        let pop = self.pop.as_ref().map(|p| {
            let mut m: HashMap<Vec<u32>, u64> = HashMap::new();
            for (row, &c) in self.counts.iter().enumerate() {
                let key = p
                    .iter()
                    .zip(levels)
                    .map(|(q, &l)| q[l as usize][row])
                    .collect();
                *m.entry(key).or_default() += c;
            }
            m
        });
        measure(&keys, pop.as_ref())
    }

    fn loss(&self, levels: &[u8]) -> f64 {
        if levels.is_empty() {
            return 0.0;
        }
        let s: f64 = levels
            .iter()
            .zip(&self.heights)
            .map(|(&l, &h)| if h == 0 { 0.0 } else { l as f64 / h as f64 })
            .sum();
        s / levels.len() as f64
    }
}

/// The `[generalize]` recipe section for a node.
fn recipe(quasi: &[Quasi], levels: &[u8]) -> String {
    let (mut band, mut dates, mut drop) = (None, None, Vec::<String>::new());
    for (q, &l) in quasi.iter().zip(levels) {
        match q.recipe_effect(l) {
            RecipeEffect::None => {}
            RecipeEffect::AgeBand(b) => band = Some(b),
            RecipeEffect::Dates(d) => dates = Some(d),
            RecipeEffect::Drop(v) => drop.extend(v),
        }
    }
    let mut s = String::from("[generalize]\n");
    if let Some(b) = band {
        s += &format!("age_band_years = {b}\n");
    }
    if let Some(d) = dates {
        s += &format!("dates = \"{d}\"\n");
    }
    if !drop.is_empty() {
        let q: Vec<String> = drop.iter().map(|d| format!("\"{d}\"")).collect();
        s += &format!("drop = [{}]\n", q.join(", "));
    }
    s
}

struct Node {
    levels: Vec<u8>,
    m: Measures,
    loss: f64,
}

/// Searches the lattice for generalizations that bring every record's risk
/// to `threshold` or below.
pub fn suggest(
    quasi: &[Quasi],
    records: &[Record],
    population: Option<&Population>,
    threshold: f64,
) -> Search {
    let table = Table::new(quasi, records, population);
    let bottom = vec![0u8; quasi.len()];
    let base = table.measure(&bottom);
    if base.at_risk(threshold) == 0 {
        return Search {
            method: "none",
            nodes_evaluated: 1,
            suggestions: Vec::new(),
        };
    }
    // dimensions that can move: a hierarchy, and a value somewhere
    let dims: Vec<usize> = (0..quasi.len())
        .filter(|&q| table.heights[q] > 0 && records.iter().any(|r| !r.values[q].is_empty()))
        .collect();
    let nodes: usize = dims
        .iter()
        .map(|&q| table.heights[q] as usize + 1)
        .try_fold(1usize, |a, b| a.checked_mul(b))
        .unwrap_or(usize::MAX);
    let eval = |levels: Vec<u8>| Node {
        m: table.measure(&levels),
        loss: table.loss(&levels),
        levels,
    };
    let to_suggestion = |n: &Node| Suggestion {
        changes: quasi
            .iter()
            .zip(&n.levels)
            .filter(|(_, &l)| l > 0)
            .map(|(q, &l)| q.describe(l))
            .collect(),
        k: n.m.k,
        max_risk: n.m.max_risk(),
        avg_risk: n.m.avg_risk(),
        records_at_risk: n.m.at_risk(threshold),
        information_loss: n.loss,
        meets_threshold: n.m.at_risk(threshold) == 0,
        recipe: recipe(quasi, &n.levels),
    };
    if nodes <= EXHAUSTIVE_NODES && nodes.saturating_mul(records.len()) <= EXHAUSTIVE_WORK {
        let mut all = Vec::with_capacity(nodes);
        let mut levels = bottom.clone();
        'enumerate: loop {
            all.push(eval(levels.clone()));
            // mixed-radix increment over the moving dimensions
            for &q in &dims {
                if levels[q] < table.heights[q] {
                    levels[q] += 1;
                    continue 'enumerate;
                }
                levels[q] = 0;
            }
            break;
        }
        let evaluated = all.len();
        let below = |a: &Node, b: &Node| a.levels.iter().zip(&b.levels).all(|(x, y)| x <= y);
        let meets: Vec<&Node> = all.iter().filter(|n| n.m.at_risk(threshold) == 0).collect();
        let base_at_risk = all[0].m.at_risk(threshold);
        let base_avg = all[0].m.avg_risk();
        let mut picked: Vec<&Node> = if meets.is_empty() {
            // none reaches it: those that come closer than the release
            all.iter()
                .filter(|n| {
                    n.m.at_risk(threshold) < base_at_risk
                        || (n.m.at_risk(threshold) == base_at_risk && n.m.avg_risk() < base_avg)
                })
                .collect()
        } else {
            meets
                .iter()
                .copied()
                .filter(|n| {
                    !meets
                        .iter()
                        .any(|o| !std::ptr::eq(*o, *n) && below(o, n) && o.levels != n.levels)
                })
                .collect()
        };
        picked.sort_by(|a, b| {
            let first = if meets.is_empty() {
                a.m.at_risk(threshold)
                    .cmp(&b.m.at_risk(threshold))
                    .then(a.m.avg_risk().total_cmp(&b.m.avg_risk()))
            } else {
                std::cmp::Ordering::Equal
            };
            first
                .then(a.loss.total_cmp(&b.loss))
                .then(a.m.max_risk().total_cmp(&b.m.max_risk()))
                .then(b.m.k.cmp(&a.m.k))
                .then(a.levels.cmp(&b.levels))
        });
        let take = if meets.is_empty() { 3 } else { MAX_SUGGESTIONS };
        return Search {
            method: "exhaustive",
            nodes_evaluated: evaluated,
            suggestions: picked.into_iter().take(take).map(to_suggestion).collect(),
        };
    }
    // greedy climb
    let mut cur = Node {
        levels: bottom,
        m: base,
        loss: 0.0,
    };
    let mut evaluated = 1;
    while cur.m.at_risk(threshold) > 0 {
        let next = dims
            .iter()
            .filter(|&&q| cur.levels[q] < table.heights[q])
            .map(|&q| {
                let mut l = cur.levels.clone();
                l[q] += 1;
                eval(l)
            })
            .min_by(|a, b| {
                a.m.at_risk(threshold)
                    .cmp(&b.m.at_risk(threshold))
                    .then(a.m.avg_risk().total_cmp(&b.m.avg_risk()))
                    .then(a.loss.total_cmp(&b.loss))
            });
        evaluated += dims.len();
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    let improved = cur.levels.iter().any(|&l| l > 0);
    Search {
        method: "greedy",
        nodes_evaluated: evaluated,
        suggestions: if improved {
            vec![to_suggestion(&cur)]
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(p: &str, age: &str, sex: &str, h: &str) -> Record {
        let s = |v: &str| {
            if v.is_empty() {
                BTreeSet::new()
            } else {
                BTreeSet::from([v.to_string()])
            }
        };
        Record {
            patient: p.into(),
            values: vec![s(age), s(sex), s(h)],
        }
    }

    /// Six patients (age, sex, height):
    ///
    /// ```text
    /// P1 41 F 1.6   P2 43 F 1.7   P3 47 F 1.8
    /// P4 42 M 1.6   P5 44 M 1.9   P6 48 M 1.7
    /// ```
    ///
    /// As released every record is unique (k=1, max 1). Threshold 0.34
    /// (k >= 3 needed). Height must go (with it, every (age, sex) pair is
    /// still unique until ages are banded); 10-year bands put all ages in
    /// 40: classes (40,F) = 3, (40,M) = 3, k = 3, max 1/3 <= 0.34.
    /// 5-year bands give (40,F) {41,43}=2, (45,F) {47}=1: not enough.
    /// Loss of (age 10-year = level 2 of 4, sex 0 of 0, height 1 of 1):
    /// (2/4 + 0 + 1)/3 = 0.5. The 20-year band reaches it too, at
    /// (3/4 + 1)/3 = 0.583, but it is above the 10-year node, so it is not
    /// minimal and not listed; nor is dropping age ((1 + 1)/3).
    #[test]
    fn finds_the_least_loss_node() {
        let q = Quasi::parse_list(&["age", "sex", "height"]).unwrap();
        let r = vec![
            rec("P1", "41", "F", "1.6"),
            rec("P2", "43", "F", "1.7"),
            rec("P3", "47", "F", "1.8"),
            rec("P4", "42", "M", "1.6"),
            rec("P5", "44", "M", "1.9"),
            rec("P6", "48", "M", "1.7"),
        ];
        let s = suggest(&q, &r, None, 0.34);
        assert_eq!(s.method, "exhaustive");
        // age 5 levels × height 2 (sex cannot move)
        assert_eq!(s.nodes_evaluated, 10);
        assert_eq!(s.suggestions.len(), 1, "{:#?}", s.suggestions);
        let best = &s.suggestions[0];
        assert!(best.meets_threshold);
        assert_eq!(best.k, 3);
        assert!((best.max_risk - 1.0 / 3.0).abs() < 1e-12);
        assert!((best.information_loss - 0.5).abs() < 1e-12);
        assert_eq!(best.changes, ["age: 10-year bands", "height: dropped"]);
        assert_eq!(
            best.recipe,
            "[generalize]\nage_band_years = 10\ndrop = [\"PatientSize\"]\n"
        );
        // already safe: nothing to suggest
        assert_eq!(suggest(&q, &r, None, 1.0).method, "none");
        // unreachable: all six in one class at best would be 1/6 > 0.1,
        // and sex splits them into 3 + 3: the closest nodes come back
        let s = suggest(&q, &r, None, 0.1);
        assert!(!s.suggestions.is_empty());
        assert!(s.suggestions.iter().all(|x| !x.meets_threshold));
        assert!((s.suggestions[0].max_risk - 1.0 / 3.0).abs() < 1e-12);
    }

    /// With a population table, the population rows are generalized with
    /// the sample and the journalist risk (1/F) decides. The population has
    /// 2 people in each released record's exact class. Threshold 0.3:
    ///
    /// ```text
    /// as released            every F = 2            max 1/2   no
    /// height dropped         (41,F) ... F = 2       max 1/2   no
    /// 5-year, height dropped (40,F) = 41,43 -> 4; (45,F) = 47 -> 2   no
    /// 10-year, height kept   (40,F,1.6) = 2         max 1/2   no
    /// 10-year, height dropped (40,F) = 6, (40,M) = 6  max 1/6  yes
    /// age dropped, height kept (F,1.6) = 2          max 1/2   no
    /// ```
    ///
    /// 20-year bands or age dropped with height dropped also reach it, but
    /// lie above the 10-year node: one minimal suggestion, journalist max
    /// 1/6, prosecutor k = 3.
    #[test]
    fn population_rows_are_generalized_too() {
        let q = Quasi::parse_list(&["age", "sex", "height"]).unwrap();
        let r = vec![
            rec("P1", "41", "F", "1.6"),
            rec("P2", "43", "F", "1.7"),
            rec("P3", "47", "F", "1.8"),
            rec("P4", "42", "M", "1.6"),
            rec("P5", "44", "M", "1.9"),
            rec("P6", "48", "M", "1.7"),
        ];
        let pop = Population {
            rows: r.iter().map(|x| (x.values.clone(), 2)).collect(),
        };
        let s = suggest(&q, &r, Some(&pop), 0.3);
        let best = &s.suggestions[0];
        assert!(best.meets_threshold);
        assert_eq!(best.changes, ["age: 10-year bands", "height: dropped"]);
        // journalist max 1/6 (population class of 6), prosecutor k = 3
        assert!((best.max_risk - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(best.k, 3);
    }
}
