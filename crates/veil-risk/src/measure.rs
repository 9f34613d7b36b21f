//! Equivalence classes and the three attacker models.
//!
//! n records, grouped into J classes by their quasi-identifier values; f is
//! the size of a record's class in the release, F its size in the population
//! (from `--population`; F = f when the population table has no such class,
//! and F is raised to f when the table says less, which cannot be).
//!
//! * k-anonymity: k = min f.
//! * prosecutor (the attacker knows the target is in the release): a
//!   record's risk is 1/f; max = 1/k; average = J/n.
//! * journalist (the attacker knows the target is in the population): a
//!   record's risk is 1/F; max = 1/min F; average = mean of 1/F.
//! * marketer (re-identify as many as possible): the expected share of
//!   records matched, the mean over records of 1/F with a population, of 1/f
//!   (= J/n) without.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::Serialize;

/// Classes of one size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeCount {
    /// Class size f.
    pub size: usize,
    /// How many classes have it.
    pub classes: usize,
    /// How many records are in them (size × classes).
    pub records: usize,
}

/// Max and average of a per-record risk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Risk {
    /// Highest record risk.
    pub max: f64,
    /// Mean over records.
    pub avg: f64,
}

/// The measures of one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measures {
    /// Records (patients).
    pub records: usize,
    /// Equivalence classes.
    pub classes: usize,
    /// Smallest class.
    pub k: usize,
    /// Class-size distribution, by size.
    pub class_sizes: Vec<SizeCount>,
    /// Prosecutor risk.
    pub prosecutor: Risk,
    /// Journalist risk (with a population table only).
    pub journalist: Option<Risk>,
    /// Marketer risk.
    pub marketer: f64,
    /// Sample classes absent from the population table (F taken as f).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population_unmatched: Option<usize>,
    /// Sample classes whose population count was below the sample count
    /// (F raised to f).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population_below_sample: Option<usize>,
    /// Per record, in input order: (f, F). F is `None` without population.
    #[serde(skip)]
    pub per_record: Vec<(usize, Option<u64>)>,
}

impl Measures {
    /// The risk the threshold applies to for record `i`: journalist (1/F)
    /// with a population, prosecutor (1/f) without.
    pub fn record_risk(&self, i: usize) -> f64 {
        let (f, pop) = self.per_record[i];
        match pop {
            Some(big_f) => 1.0 / big_f as f64,
            None => 1.0 / f as f64,
        }
    }

    /// The highest record risk under the measure the threshold applies to.
    pub fn max_risk(&self) -> f64 {
        self.journalist.unwrap_or(self.prosecutor).max
    }

    /// The average record risk under that measure.
    pub fn avg_risk(&self) -> f64 {
        self.journalist.unwrap_or(self.prosecutor).avg
    }

    /// Records whose risk is above `threshold` (strictly).
    pub fn at_risk(&self, threshold: f64) -> usize {
        (0..self.per_record.len())
            .filter(|&i| self.record_risk(i) > threshold)
            .count()
    }
}

/// Measures a table: `keys[i]` is record i's class. `population` maps a
/// class to its population size.
pub fn measure<K: Hash + Eq>(keys: &[K], population: Option<&HashMap<K, u64>>) -> Measures {
    let n = keys.len();
    let mut sizes: HashMap<&K, usize> = HashMap::new();
    for k in keys {
        *sizes.entry(k).or_default() += 1;
    }
    let mut dist: BTreeMap<usize, usize> = BTreeMap::new();
    for &f in sizes.values() {
        *dist.entry(f).or_default() += 1;
    }
    let (mut unmatched, mut below) = (0, 0);
    let class_pop: HashMap<&K, u64> = match population {
        Some(pop) => sizes
            .iter()
            .map(|(&k, &f)| {
                let big_f = match pop.get(k) {
                    None => {
                        unmatched += 1;
                        f as u64
                    }
                    Some(&c) if c < f as u64 => {
                        below += 1;
                        f as u64
                    }
                    Some(&c) => c,
                };
                (k, big_f)
            })
            .collect(),
        None => HashMap::new(),
    };
    let per_record: Vec<(usize, Option<u64>)> = keys
        .iter()
        .map(|k| (sizes[k], class_pop.get(k).copied()))
        .collect();
    let mean = |it: &mut dyn Iterator<Item = f64>| {
        if n == 0 {
            0.0
        } else {
            it.sum::<f64>() / n as f64
        }
    };
    let k = sizes.values().copied().min().unwrap_or(0);
    let prosecutor = Risk {
        max: if k == 0 { 0.0 } else { 1.0 / k as f64 },
        avg: mean(&mut per_record.iter().map(|&(f, _)| 1.0 / f as f64)),
    };
    let journalist = population.map(|_| Risk {
        max: per_record
            .iter()
            .filter_map(|&(_, p)| p)
            .map(|p| 1.0 / p as f64)
            .fold(0.0, f64::max),
        avg: mean(
            &mut per_record
                .iter()
                .filter_map(|&(_, p)| p)
                .map(|p| 1.0 / p as f64),
        ),
    });
    let marketer = journalist.map_or(prosecutor.avg, |j| j.avg);
    Measures {
        records: n,
        classes: sizes.len(),
        k,
        class_sizes: dist
            .into_iter()
            .map(|(size, classes)| SizeCount {
                size,
                classes,
                records: size * classes,
            })
            .collect(),
        prosecutor,
        journalist,
        marketer,
        population_unmatched: population.map(|_| unmatched),
        population_below_sample: population.map(|_| below),
        per_record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Seven records, quasi-identifiers (sex, age band):
    ///
    /// ```text
    /// r0 F 40   r1 F 40   r2 F 40      class A = {r0,r1,r2}  f=3
    /// r3 M 40   r4 M 40                class B = {r3,r4}     f=2
    /// r5 M 50                          class C = {r5}        f=1
    /// r6 F 50                          class D = {r6}        f=1
    /// ```
    ///
    /// n=7, J=4, k=1 (a tie: C and D). Sizes: 1 -> 2 classes (2 records),
    /// 2 -> 1 (2), 3 -> 1 (3).
    /// Prosecutor: max 1/1 = 1; avg (3·1/3 + 2·1/2 + 1 + 1)/7 = 4/7 = J/n.
    /// Marketer without population = J/n = 4/7.
    fn table() -> Vec<(&'static str, u32)> {
        vec![
            ("F", 40),
            ("F", 40),
            ("F", 40),
            ("M", 40),
            ("M", 40),
            ("M", 50),
            ("F", 50),
        ]
    }

    #[test]
    fn sample_only() {
        let m = measure(&table(), None);
        assert_eq!((m.records, m.classes, m.k), (7, 4, 1));
        assert_eq!(
            m.class_sizes,
            vec![
                SizeCount {
                    size: 1,
                    classes: 2,
                    records: 2
                },
                SizeCount {
                    size: 2,
                    classes: 1,
                    records: 2
                },
                SizeCount {
                    size: 3,
                    classes: 1,
                    records: 3
                },
            ]
        );
        assert!(close(m.prosecutor.max, 1.0));
        assert!(close(m.prosecutor.avg, 4.0 / 7.0));
        assert!(close(m.marketer, 4.0 / 7.0));
        assert!(m.journalist.is_none());
        // threshold 0.4: r5 and r6 (risk 1) and r3, r4 (1/2) are above;
        // r0..r2 (1/3) are not. 1/2 > 0.5 is false: strictly above.
        assert_eq!(m.at_risk(0.4), 4);
        assert_eq!(m.at_risk(0.5), 2);
        assert_eq!(m.at_risk(1.0), 0);
        assert!(close(m.record_risk(0), 1.0 / 3.0));
    }

    /// Same sample; the population table gives
    ///
    /// ```text
    /// A (F,40) 30    B (M,40) 1 (below the sample's 2: raised to 2)
    /// C (M,50) 4     D (F,50) missing (taken as f = 1)
    /// ```
    ///
    /// Journalist per record: r0..r2 1/30, r3,r4 1/2, r5 1/4, r6 1/1.
    /// max = 1; avg = (3/30 + 2/2 + 1/4 + 1)/7 = (0.1 + 1 + 0.25 + 1)/7
    /// = 2.35/7. Marketer = the same mean = 2.35/7.
    /// Prosecutor is unchanged (max 1, avg 4/7).
    #[test]
    fn with_population() {
        let pop: HashMap<(&str, u32), u64> = [
            (("F", 40), 30),
            (("M", 40), 1),
            (("M", 50), 4),
            (("X", 1), 9),
        ]
        .into_iter()
        .collect();
        let m = measure(&table(), Some(&pop));
        let j = m.journalist.unwrap();
        assert!(close(j.max, 1.0));
        assert!(close(j.avg, 2.35 / 7.0));
        assert!(close(m.marketer, 2.35 / 7.0));
        assert!(close(m.prosecutor.avg, 4.0 / 7.0));
        assert_eq!(m.population_unmatched, Some(1));
        assert_eq!(m.population_below_sample, Some(1));
        assert_eq!(m.per_record[5], (1, Some(4)));
        // threshold 0.3 on journalist risk: r3, r4 (1/2) and r6 (1) are
        // above; r5 (1/4) no longer is, though its prosecutor risk is 1
        assert_eq!(m.at_risk(0.3), 3);
        assert!(close(m.max_risk(), 1.0));

        // Every class well covered: D (F,50) 20 and B 10 added.
        // Journalist: r0..r2 1/30, r3,r4 1/10, r5 1/4, r6 1/20.
        // max = 1/4; avg = (0.1 + 0.2 + 0.25 + 0.05)/7 = 0.6/7.
        let pop: HashMap<(&str, u32), u64> = [
            (("F", 40), 30),
            (("M", 40), 10),
            (("M", 50), 4),
            (("F", 50), 20),
        ]
        .into_iter()
        .collect();
        let m = measure(&table(), Some(&pop));
        let j = m.journalist.unwrap();
        assert!(close(j.max, 0.25));
        assert!(close(j.avg, 0.6 / 7.0));
        assert_eq!(m.population_unmatched, Some(0));
        // above 0.09: r3, r4 (0.1) and r5 (0.25); not r0..r2 (1/30), r6 (1/20)
        assert_eq!(m.at_risk(0.09), 3);
    }

    /// Ties: two classes of size 2 and nothing smaller.
    /// n=4, J=2, k=2, prosecutor max 1/2, avg 2/4 = 1/2; every record at
    /// 1/2, so all four are above 0.09 and none above 0.5.
    #[test]
    fn ties() {
        let m = measure(&["a", "b", "a", "b"], None);
        assert_eq!((m.k, m.classes), (2, 2));
        assert_eq!(
            m.class_sizes,
            vec![SizeCount {
                size: 2,
                classes: 2,
                records: 4
            }]
        );
        assert!(close(m.prosecutor.max, 0.5) && close(m.prosecutor.avg, 0.5));
        assert_eq!(m.at_risk(0.09), 4);
        assert_eq!(m.at_risk(0.5), 0);
    }

    #[test]
    fn one_class_and_empty() {
        let m = measure(&[(); 12], None);
        // k = 12: 1/12 = 0.0833 <= 0.09, nobody at risk; with 11, 1/11 =
        // 0.0909 > 0.09
        assert_eq!(m.k, 12);
        assert_eq!(m.at_risk(0.09), 0);
        assert_eq!(measure(&[(); 11], None).at_risk(0.09), 11);
        let m = measure::<u8>(&[], None);
        assert_eq!((m.k, m.records), (0, 0));
        assert_eq!(m.prosecutor.max, 0.0);
    }
}
