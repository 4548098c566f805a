//! Expanding an experiment's grids into the concrete decoding settings a sweep runs.
//!
//! The order is deterministic so that progress output, CSV rows and resumed runs line up:
//! sampling settings first, as the cartesian product with `temperature` outermost, then
//! `top_k`, `top_p`, the processor knobs (in the order of [`GridSpec::processors`]) and `seed`
//! innermost, each in the order the TOML lists them; then beam
//! settings, `num_beams` outer and `length_penalty` inner. With several `[[grid]]` tables the
//! sampling settings are each table's product in turn, in file order; a setting an earlier
//! table already produced (the same [`Setting::id`]) is kept once, where it first appeared,
//! and counted in [`Expansion::duplicates`].
//!
//! Greedy decoding is argmax, so seed, `top_k`, `top_p`, the truncation filters and
//! `temperature_last` cannot change it (transformers' greedy search ignores them too); only the
//! penalties can. Every temperature-0 grid point with the same penalties, in whichever table, is
//! the same setting. They are folded into one greedy setting, placed where the first of them
//! would have been, so the sweep does not repeat identical work;
//! [`Expansion::folded_greedy`] says how many points were dropped that way.
//!
//! [`GridSpec::processors`]: crate::spec::experiment::GridSpec::processors

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use crate::engine::beam::EarlyStopping;
use crate::engine::processors::Processors;
use crate::spec::experiment::{BeamSpec, Experiment, early_stopping};

/// How a setting picks tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Draw from the (temperature-scaled, top-k/top-p filtered) distribution.
    Sample,
    /// Take the most likely token (temperature 0).
    Greedy,
    /// Beam search, as transformers' `generate(num_beams=..)`: plain, group (diverse) or
    /// beam sampling.
    Beam,
    /// Contrastive search (Su et al. 2022), as transformers' `generate(penalty_alpha=..,
    /// top_k=..)`.
    Contrastive,
    /// Not generated: the human reference continuation, scored alongside for comparison.
    Human,
}

impl Strategy {
    /// The name used in CSV columns, ids and `run.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Sample => "sample",
            Strategy::Greedy => "greedy",
            Strategy::Beam => "beam",
            Strategy::Contrastive => "contrastive",
            Strategy::Human => "human",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One concrete decoding setting. Fields that do not apply to a strategy hold their "off"
/// value (top_k 0, top_p 1.0, temperature 0 for the deterministic strategies) so every
/// CSV row has every column filled the same way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub strategy: Strategy,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    /// `None` for greedy and beam, which draw no random numbers.
    pub seed: Option<u64>,
    /// 1 for sampling and greedy.
    pub num_beams: usize,
    /// Beam only.
    pub length_penalty: Option<f64>,
    /// Beam only; written as in the TOML (`true`, `false`, `"never"`).
    #[serde(serialize_with = "early_stopping::serialize_option")]
    pub early_stopping: Option<EarlyStopping>,
    /// Continuations per prompt: `samples` for sampling, 1 for greedy and contrastive,
    /// `num_return_sequences` for beam.
    pub samples: usize,
    /// Beam only: groups of group (diverse) beam search; 1 is plain beam search. This and the
    /// fields below are left out of the JSON at their defaults, so settings without them
    /// serialise as they always have.
    #[serde(skip_serializing_if = "is_one")]
    pub num_beam_groups: usize,
    /// Beam only, with `num_beam_groups > 1`.
    #[serde(skip_serializing_if = "is_zero")]
    pub diversity_penalty: f64,
    /// Beam only: beam sampling, drawing with `temperature`, `top_k`, `top_p`, the truncation
    /// knobs and `seed`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub do_sample: bool,
    /// Contrastive only (with `top_k`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_alpha: Option<f64>,
    /// Penalties and further filters; greedy and beam keep only the penalties. Written
    /// flattened, each knob only when on, so settings without them serialise as they always
    /// have.
    #[serde(flatten)]
    pub processors: Processors,
}

impl Setting {
    /// A setting with one text per prompt and no knobs: greedy decoding, or the human
    /// reference.
    pub fn single(strategy: Strategy) -> Self {
        Self {
            strategy,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: None,
            num_beams: 1,
            length_penalty: None,
            early_stopping: None,
            samples: 1,
            num_beam_groups: 1,
            diversity_penalty: 0.0,
            do_sample: false,
            penalty_alpha: None,
            processors: Processors::OFF,
        }
    }

    /// A key for file names, CSV rows and resuming, such as `sample_t0.8_k50_p0.9_s1`,
    /// `greedy` or `beam_n8_lp1`. It is built from the parameters, not the position in the
    /// grid, so it stays the same when the grid around it changes. Numbers use Rust's
    /// shortest round-trip formatting, so distinct values always give distinct ids and the
    /// only characters are letters, digits, `_`, `.` and `-`. A non-default early stopping
    /// adds `_es-true` or `_es-never`, so a changed `early_stopping` does not reuse results.
    /// Each processor knob that is on adds its own part (see [`knob_suffix`]), before the
    /// seed: `sample_t1_k0_p1_minp0.1_s1`, `greedy_rp1.2`; a setting without them keeps the
    /// id it always had.
    pub fn id(&self) -> String {
        match self.strategy {
            Strategy::Sample => {
                let mut id = format!(
                    "sample_t{}_k{}_p{}",
                    number(self.temperature),
                    self.top_k,
                    number(self.top_p)
                );
                id.push_str(&knob_suffix(&self.processors));
                if let Some(seed) = self.seed {
                    id.push_str(&format!("_s{seed}"));
                }
                id
            }
            Strategy::Greedy => format!("greedy{}", knob_suffix(&self.processors)),
            Strategy::Beam => {
                let mut id = format!(
                    "beam_n{}_lp{}",
                    self.num_beams,
                    number(self.length_penalty.unwrap_or(1.0))
                );
                match self.early_stopping {
                    Some(EarlyStopping::Always) => id.push_str("_es-true"),
                    Some(EarlyStopping::Never) => id.push_str("_es-never"),
                    Some(EarlyStopping::Heuristic) | None => {}
                }
                if self.num_beam_groups > 1 {
                    id.push_str(&format!(
                        "_g{}_dp{}",
                        self.num_beam_groups,
                        number(self.diversity_penalty)
                    ));
                }
                if self.do_sample {
                    id.push_str(&format!(
                        "_t{}_k{}_p{}",
                        number(self.temperature),
                        self.top_k,
                        number(self.top_p)
                    ));
                }
                id.push_str(&knob_suffix(&self.processors));
                if let (true, Some(seed)) = (self.do_sample, self.seed) {
                    id.push_str(&format!("_s{seed}"));
                }
                id
            }
            Strategy::Contrastive => format!(
                "contrastive_a{}_k{}",
                number(self.penalty_alpha.unwrap_or(0.0)),
                self.top_k
            ),
            Strategy::Human => "human".to_owned(),
        }
    }

    /// Sequences decoded side by side per prompt: the beams for beam search, otherwise one
    /// per continuation. This is what costs forward passes.
    pub fn rows(&self) -> usize {
        match self.strategy {
            Strategy::Beam => self.num_beams,
            Strategy::Contrastive => self.top_k.max(1),
            Strategy::Sample | Strategy::Greedy => self.samples,
            Strategy::Human => 0,
        }
    }
}

/// The processor knobs that are on, in the sweep order: (TOML key, id tag, value).
pub fn knobs_on(p: &Processors) -> Vec<(&'static str, &'static str, String)> {
    let off = Processors::OFF;
    let mut on = Vec::new();
    let mut add = |is_on: bool, key, tag, value: String| {
        if is_on {
            on.push((key, tag, value));
        }
    };
    add(p.min_p != off.min_p, "min_p", "minp", number(p.min_p));
    add(
        p.typical_p != off.typical_p,
        "typical_p",
        "typ",
        number(p.typical_p),
    );
    add(
        p.epsilon_cutoff != off.epsilon_cutoff,
        "epsilon_cutoff",
        "eps",
        number(p.epsilon_cutoff),
    );
    add(
        p.eta_cutoff != off.eta_cutoff,
        "eta_cutoff",
        "eta",
        number(p.eta_cutoff),
    );
    add(
        p.top_n_sigma != off.top_n_sigma,
        "top_n_sigma",
        "nsig",
        number(p.top_n_sigma),
    );
    add(
        p.repetition_penalty != off.repetition_penalty,
        "repetition_penalty",
        "rp",
        number(p.repetition_penalty),
    );
    add(
        p.frequency_penalty != off.frequency_penalty,
        "frequency_penalty",
        "fp",
        number(p.frequency_penalty),
    );
    add(
        p.presence_penalty != off.presence_penalty,
        "presence_penalty",
        "pp",
        number(p.presence_penalty),
    );
    add(
        p.no_repeat_ngram_size != off.no_repeat_ngram_size,
        "no_repeat_ngram_size",
        "nrng",
        p.no_repeat_ngram_size.to_string(),
    );
    add(
        p.temperature_last,
        "temperature_last",
        "tlast",
        String::new(),
    );
    on
}

/// The id parts of the processor knobs that are on (see [`knobs_on`]): `_minp` (`min_p`),
/// `_typ` (`typical_p`), `_eps` (`epsilon_cutoff`), `_eta` (`eta_cutoff`), `_nsig`
/// (`top_n_sigma`), `_rp` (`repetition_penalty`), `_fp` (`frequency_penalty`), `_pp`
/// (`presence_penalty`), `_nrng` (`no_repeat_ngram_size`), each followed by its value, and
/// `_tlast` for `temperature_last = true`. Empty when every knob is off.
pub fn knob_suffix(p: &Processors) -> String {
    knobs_on(p)
        .into_iter()
        .map(|(_, tag, value)| format!("_{tag}{value}"))
        .collect()
}

/// The knobs that are on as `key=value` words for legends and messages, such as
/// `min_p=0.1, temperature_last`; empty when every knob is off.
pub fn knob_words(p: &Processors) -> String {
    knobs_on(p)
        .into_iter()
        .map(|(key, _, value)| {
            if value.is_empty() {
                key.to_owned()
            } else {
                format!("{key}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Longest plain decimal a number keeps in an id; longer ones are written in scientific
/// form, which is never longer than 24 characters for any finite f64.
const MAX_PLAIN_DIGITS: usize = 16;

/// `{}` of an f64, with -0 shown as 0 so it cannot produce a second id for the same value.
/// Extreme values (`1e-300` would be 300 zeros and a 1, too long for a file name) are
/// written as `{:e}` instead. Both forms are shortest round-trip, and only the scientific
/// one contains an `e`, so distinct values still give distinct ids. Messages quote numbers
/// this way too.
pub fn number(v: f64) -> String {
    let v = v + 0.0;
    let plain = format!("{v}");
    if plain.len() <= MAX_PLAIN_DIGITS {
        plain
    } else {
        format!("{v:e}")
    }
}

/// The settings a sweep runs, and how many temperature-0 grid points were folded away.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    pub settings: Vec<Setting>,
    /// Temperature-0 grid points beyond the first, over all grid tables, merged into the
    /// single greedy setting; 0 when nothing was folded.
    pub folded_greedy: usize,
    /// Sampling grid points dropped because an earlier `[[grid]]` table already produced the
    /// same setting; always 0 for a single table, whose lists hold no value twice. Grid points
    /// = sampling and greedy settings + `folded_greedy` + this.
    pub duplicates: usize,
}

/// Expands the experiment's grid tables and `[beam]` into settings, in the order described
/// in the module documentation.
pub fn expand(exp: &Experiment) -> Expansion {
    let mut settings = Vec::new();
    let mut greedy_points = 0usize;
    let mut duplicates = 0usize;
    let mut greedy_settings = 0usize;
    let mut seen: HashSet<String> = HashSet::new();
    for grid in &exp.grids {
        let knobs = grid.processors();
        for &temperature in &grid.temperature {
            for &top_k in &grid.top_k {
                for &top_p in &grid.top_p {
                    for &processors in &knobs {
                        for &seed in &grid.seed {
                            if temperature == 0.0 {
                                greedy_points += 1;
                                let greedy = Setting {
                                    processors: processors.penalties_only(),
                                    ..Setting::single(Strategy::Greedy)
                                };
                                if seen.insert(greedy.id()) {
                                    settings.push(greedy);
                                    greedy_settings += 1;
                                }
                                continue;
                            }
                            let setting = Setting {
                                strategy: Strategy::Sample,
                                temperature,
                                top_k,
                                top_p,
                                seed: Some(seed),
                                num_beams: 1,
                                length_penalty: None,
                                early_stopping: None,
                                samples: exp.samples,
                                processors,
                                ..Setting::single(Strategy::Sample)
                            };
                            if seen.insert(setting.id()) {
                                settings.push(setting);
                            } else {
                                duplicates += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(beam) = &exp.beam {
        settings.extend(beam_settings(beam));
    }
    if let Some(contrastive) = &exp.contrastive {
        for &penalty_alpha in &contrastive.penalty_alpha {
            for &top_k in &contrastive.top_k {
                settings.push(Setting {
                    top_k,
                    penalty_alpha: Some(penalty_alpha),
                    ..Setting::single(Strategy::Contrastive)
                });
            }
        }
    }
    Expansion {
        settings,
        folded_greedy: greedy_points - greedy_settings,
        duplicates,
    }
}

/// The settings of `[beam]`, in the order `num_beams` outermost, then `length_penalty`,
/// `num_beam_groups`, `diversity_penalty`, `repetition_penalty`, `no_repeat_ngram_size`,
/// `do_sample` and, for beam sampling, its grid in `[grid]`'s order. `diversity_penalty` applies
/// only with `num_beam_groups > 1` (transformers refuses it without groups, and groups without
/// it), and group beam search does not sample, so those combinations are skipped; a setting
/// listed twice that way is kept once.
fn beam_settings(beam: &BeamSpec) -> Vec<Setting> {
    let mut out: Vec<Setting> = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |s: Setting| {
        if seen.insert(s.id()) {
            out.push(s);
        }
    };
    let sampling: Vec<(f64, usize, f64, Processors, u64)> = match &beam.sampling {
        None => Vec::new(),
        Some(grid) => {
            let knobs = grid.processors();
            let mut all = Vec::new();
            for &t in &grid.temperature {
                for &k in &grid.top_k {
                    for &p in &grid.top_p {
                        for &knob in &knobs {
                            for &seed in &grid.seed {
                                all.push((t, k, p, knob, seed));
                            }
                        }
                    }
                }
            }
            all
        }
    };
    for &num_beams in &beam.num_beams {
        for &length_penalty in &beam.length_penalty {
            for &groups in &beam.num_beam_groups {
                for &diversity_penalty in &beam.diversity_penalty {
                    if (groups > 1) != (diversity_penalty > 0.0) {
                        continue;
                    }
                    for &repetition_penalty in &beam.repetition_penalty {
                        for &no_repeat_ngram_size in &beam.no_repeat_ngram_size {
                            let penalties = Processors {
                                repetition_penalty,
                                no_repeat_ngram_size,
                                ..Processors::OFF
                            };
                            let plain = Setting {
                                strategy: Strategy::Beam,
                                num_beams,
                                length_penalty: Some(length_penalty),
                                early_stopping: Some(beam.early_stopping),
                                samples: beam.num_return_sequences,
                                num_beam_groups: groups,
                                diversity_penalty,
                                processors: penalties,
                                ..Setting::single(Strategy::Beam)
                            };
                            for &do_sample in &beam.do_sample {
                                if !do_sample {
                                    push(plain.clone());
                                } else if groups == 1 {
                                    for &(temperature, top_k, top_p, knobs, seed) in &sampling {
                                        push(Setting {
                                            temperature,
                                            top_k,
                                            top_p,
                                            seed: Some(seed),
                                            do_sample: true,
                                            processors: Processors {
                                                repetition_penalty,
                                                no_repeat_ngram_size,
                                                ..knobs
                                            },
                                            ..plain.clone()
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The most tokens the sweep will generate: Σ over settings of prompts × rows ×
/// max_new_tokens, counting every beam as a row. Generation can stop early at end of text,
/// so this is an upper bound, which is what `sweep validate` should promise.
pub fn planned_tokens(exp: &Experiment, settings: &[Setting]) -> u64 {
    let per_row = (exp.prompts.len() as u64).saturating_mul(exp.max_new_tokens as u64);
    settings
        .iter()
        .map(|s| (s.rows() as u64).saturating_mul(per_row))
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;

    fn experiment(grid_and_beam: &str) -> Experiment {
        let text = format!(
            "prompts = [\"ROMEO:\", \"JULIET:\", \"NURSE:\"]\nmax_new_tokens = 10\nsamples = 4\n{grid_and_beam}"
        );
        Experiment::from_str(&text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn order_is_temperature_then_top_k_then_top_p_then_seed_then_beams() {
        let exp = experiment(
            "[grid]\ntemperature = [0.8, 0.5]\ntop_k = [0, 50]\ntop_p = 0.9\nseed = [2, 1]\n\
             [beam]\nnum_beams = [8, 4]\nlength_penalty = [1.0, 0.5]\n",
        );
        let ids: Vec<String> = expand(&exp).settings.iter().map(Setting::id).collect();
        assert_eq!(
            ids,
            [
                "sample_t0.8_k0_p0.9_s2",
                "sample_t0.8_k0_p0.9_s1",
                "sample_t0.8_k50_p0.9_s2",
                "sample_t0.8_k50_p0.9_s1",
                "sample_t0.5_k0_p0.9_s2",
                "sample_t0.5_k0_p0.9_s1",
                "sample_t0.5_k50_p0.9_s2",
                "sample_t0.5_k50_p0.9_s1",
                "beam_n8_lp1",
                "beam_n8_lp0.5",
                "beam_n4_lp1",
                "beam_n4_lp0.5",
            ]
        );
    }

    #[test]
    fn temperature_zero_folds_into_one_greedy_setting_where_it_first_appears() {
        let exp = experiment(
            "[grid]\ntemperature = [0.8, 0.0, 1.0]\ntop_k = [0, 50]\ntop_p = [0.9, 1.0]\nseed = [1, 2]\n",
        );
        let expansion = expand(&exp);
        // 3 × 2 × 2 × 2 = 24 grid points; the 8 at temperature 0 become one setting.
        assert_eq!(expansion.settings.len(), 24 - 8 + 1);
        assert_eq!(expansion.folded_greedy, 7);
        let greedy: Vec<usize> = (0..expansion.settings.len())
            .filter(|&i| expansion.settings[i].strategy == Strategy::Greedy)
            .collect();
        assert_eq!(greedy, [8], "after the 8 points at temperature 0.8");
        let g = &expansion.settings[8];
        assert_eq!(g.id(), "greedy");
        assert_eq!(
            (g.samples, g.seed, g.top_k, g.top_p, g.num_beams),
            (1, None, 0, 1.0, 1)
        );
        assert_eq!(expansion.settings[9].id(), "sample_t1_k0_p0.9_s1");
        assert!(
            expansion
                .settings
                .iter()
                .filter(|s| s.strategy == Strategy::Sample)
                .all(|s| s.samples == 4 && s.seed.is_some() && s.temperature > 0.0)
        );
    }

    #[test]
    fn no_folding_without_temperature_zero_and_none_for_a_single_point() {
        let exp = experiment("[grid]\ntemperature = [0.5, 1.0]\nseed = [1, 2]\n");
        assert_eq!(expand(&exp).folded_greedy, 0);
        let exp = experiment("[grid]\ntemperature = 0\n");
        let expansion = expand(&exp);
        assert_eq!(expansion.folded_greedy, 0);
        assert_eq!(expansion.settings.len(), 1);
        assert_eq!(expansion.settings[0].strategy, Strategy::Greedy);
    }

    fn ids(expansion: &Expansion) -> Vec<String> {
        expansion.settings.iter().map(Setting::id).collect()
    }

    #[test]
    fn grid_tables_expand_in_file_order_holtzman_table_1() {
        let exp = experiment(
            "[[grid]]\ntemperature = [0.0, 1.0, 0.9]\n\
             [[grid]]\ntop_k = [40, 640]\n\
             [[grid]]\ntop_k = 40\ntemperature = 0.7\n\
             [[grid]]\ntop_p = 0.95\n\
             [beam]\nnum_beams = 4\n",
        );
        let expansion = expand(&exp);
        assert_eq!(
            ids(&expansion),
            [
                "greedy",
                "sample_t1_k0_p1_s0",
                "sample_t0.9_k0_p1_s0",
                "sample_t1_k40_p1_s0",
                "sample_t1_k640_p1_s0",
                "sample_t0.7_k40_p1_s0",
                "sample_t1_k0_p0.95_s0",
                "beam_n4_lp1",
            ]
        );
        assert_eq!((expansion.folded_greedy, expansion.duplicates), (0, 0));
    }

    #[test]
    fn a_setting_repeated_by_a_later_table_is_kept_once_where_it_first_appeared() {
        let exp = experiment(
            "[[grid]]\ntemperature = [0.5, 1.0]\nseed = [1, 2]\n\
             [[grid]]\ntemperature = [1.0, 0.7]\nseed = [2, 3]\n\
             [[grid]]\ntemperature = 0.5\nseed = 1\n",
        );
        let expansion = expand(&exp);
        assert_eq!(
            ids(&expansion),
            [
                "sample_t0.5_k0_p1_s1",
                "sample_t0.5_k0_p1_s2",
                "sample_t1_k0_p1_s1",
                "sample_t1_k0_p1_s2",
                "sample_t1_k0_p1_s3",
                "sample_t0.7_k0_p1_s2",
                "sample_t0.7_k0_p1_s3",
            ]
        );
        // 4 + 4 + 1 points: t1 s2 and t0.5 s1 came again.
        assert_eq!(expansion.duplicates, 2);
        assert_eq!(expansion.folded_greedy, 0);
        assert_eq!(
            expansion.settings.len() + expansion.duplicates + expansion.folded_greedy,
            9
        );
        // The same values spelt differently are the same setting.
        let exp = experiment("[[grid]]\ntemperature = 1\n[[grid]]\ntemperature = 1.0\ntop_p = 1\n");
        let expansion = expand(&exp);
        assert_eq!(ids(&expansion), ["sample_t1_k0_p1_s0"]);
        assert_eq!(expansion.duplicates, 1);
    }

    #[test]
    fn greedy_folds_across_grid_tables_at_its_first_place() {
        let exp = experiment(
            "[[grid]]\ntemperature = 0.8\ntop_k = [0, 50]\n\
             [[grid]]\ntemperature = [0, 1.0]\nseed = [1, 2]\n\
             [[grid]]\ntemperature = 0\ntop_p = [0.9, 1.0]\n",
        );
        let expansion = expand(&exp);
        assert_eq!(
            ids(&expansion),
            [
                "sample_t0.8_k0_p1_s0",
                "sample_t0.8_k50_p1_s0",
                "greedy",
                "sample_t1_k0_p1_s1",
                "sample_t1_k0_p1_s2",
            ]
        );
        // Four temperature-0 points (two per table) make one greedy setting.
        assert_eq!(expansion.folded_greedy, 3);
        assert_eq!(expansion.duplicates, 0);
        let greedy = &expansion.settings[2];
        assert_eq!((greedy.samples, greedy.seed), (1, None));
    }

    #[test]
    fn beam_settings_carry_their_parameters() {
        let exp = experiment(
            "[beam]\nnum_beams = [4, 8]\nearly_stopping = true\nnum_return_sequences = 2\n",
        );
        let settings = expand(&exp).settings;
        assert_eq!(settings.len(), 2);
        assert!(settings.iter().all(|s| s.strategy == Strategy::Beam
            && s.samples == 2
            && s.seed.is_none()
            && s.length_penalty == Some(1.0)
            && s.early_stopping == Some(EarlyStopping::Always)));
        assert_eq!(settings[1].num_beams, 8);
        assert_eq!(settings[1].id(), "beam_n8_lp1_es-true");
        let json = serde_json::to_value(&settings[1]).unwrap();
        assert_eq!(json["strategy"], "beam");
        assert_eq!(json["early_stopping"], true);
    }

    #[test]
    fn ids_are_unique_and_filename_safe() {
        let exp = experiment(
            "[grid]\ntemperature = [0, 0.1, 0.25, 1, 1.5, 2]\ntop_k = [0, 1, 10, 50]\n\
             top_p = [0.1, 0.9, 0.95, 1.0]\nseed = [0, 1, 12345678901]\n\
             [beam]\nnum_beams = [1, 2, 4, 16]\nlength_penalty = [-1, 0, 0.5, 1, 2]\n",
        );
        let settings = expand(&exp).settings;
        assert_eq!(settings.len(), 5 * 4 * 4 * 3 + 1 + 4 * 5);
        let ids: HashSet<String> = settings.iter().map(Setting::id).collect();
        assert_eq!(ids.len(), settings.len());
        for id in &ids {
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')),
                "{id}"
            );
        }
        assert!(ids.contains("beam_n2_lp-1"));
        assert!(ids.contains("sample_t0.25_k10_p0.95_s12345678901"));
    }

    #[test]
    fn ids_depend_on_values_not_spelling() {
        let setting = |t: f64| Setting {
            strategy: Strategy::Sample,
            temperature: t,
            top_k: 0,
            top_p: 1.0,
            seed: Some(0),
            num_beams: 1,
            length_penalty: None,
            early_stopping: None,
            samples: 1,
            num_beam_groups: 1,
            diversity_penalty: 0.0,
            do_sample: false,
            penalty_alpha: None,
            processors: Processors::OFF,
        };
        assert_eq!(setting(1.0).id(), "sample_t1_k0_p1_s0");
        assert_ne!(setting(0.1).id(), setting(0.1 + 1e-12).id());
        let beam = Setting {
            strategy: Strategy::Beam,
            length_penalty: Some(-0.0),
            early_stopping: Some(EarlyStopping::Never),
            num_beams: 3,
            ..setting(0.0)
        };
        assert_eq!(beam.id(), "beam_n3_lp0_es-never");
        assert_eq!(Strategy::Human.to_string(), "human");
        assert_eq!(Strategy::Sample.as_str(), "sample");
    }

    /// `temperature = 1e-300` (now refused elsewhere), `top_p = 1e-300` or
    /// `length_penalty = 1e308` made ids hundreds of digits long, and the run failed with
    /// "File name too long" after generating everything.
    #[test]
    fn regression_ids_are_short_for_any_float_and_still_distinct() {
        let sample = |t: f64, p: f64| Setting {
            strategy: Strategy::Sample,
            temperature: t,
            top_k: usize::MAX,
            top_p: p,
            seed: Some(u64::MAX),
            num_beams: 1,
            length_penalty: None,
            early_stopping: None,
            samples: 1,
            num_beam_groups: 1,
            diversity_penalty: 0.0,
            do_sample: false,
            penalty_alpha: None,
            processors: Processors::OFF,
        };
        let beam = |lp: f64| Setting {
            strategy: Strategy::Beam,
            num_beams: usize::MAX,
            length_penalty: Some(lp),
            early_stopping: Some(EarlyStopping::Never),
            ..sample(0.0, 1.0)
        };
        let extremes = [
            1e-300,
            f64::MIN_POSITIVE,
            5e-324,
            1e308,
            f64::MAX,
            -f64::MAX,
            -1.2345678901234567e-300,
            0.1 + 0.2,
            123456789012345680.0,
        ];
        let mut ids = HashSet::new();
        for &x in &extremes {
            // Temperatures and top_p are positive; length penalties may be negative.
            let sampled = (x > 0.0).then(|| sample(x, x).id());
            for id in sampled.into_iter().chain([beam(x).id()]) {
                assert!(id.len() <= 100, "{} chars: {id}", id.len());
                assert!(
                    id.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')),
                    "{id}"
                );
                assert!(ids.insert(id.clone()), "{id} twice");
            }
        }
        assert_eq!(
            beam(1e308).id(),
            format!("beam_n{}_lp1e308_es-never", usize::MAX)
        );
        assert!(sample(1e-300, 1.0).id().starts_with("sample_t1e-300_k"));
        // Neighbouring values in either form stay apart.
        assert_ne!(
            beam(1e-300).id(),
            beam(f64::from_bits(1e-300f64.to_bits() + 1)).id()
        );
        assert_ne!(beam(0.1 + 0.2).id(), beam(0.3).id());
        // Ordinary values keep the ids the shipped results use.
        assert_eq!(
            sample(0.5, 1.0).id(),
            format!("sample_t0.5_k{}_p1_s{}", usize::MAX, u64::MAX)
        );
        let ordinary = Setting {
            top_k: 0,
            seed: Some(1),
            ..sample(0.5, 1.0)
        };
        assert_eq!(ordinary.id(), "sample_t0.5_k0_p1_s1");
        let ordinary = Setting {
            num_beams: 4,
            early_stopping: None,
            ..beam(1.0)
        };
        assert_eq!(ordinary.id(), "beam_n4_lp1");
        for v in [0.95, 0.001, 1.5, 12.25, 0.000001, 1234567.5] {
            assert_eq!(number(v), format!("{v}"));
        }
    }

    #[test]
    fn knobs_expand_between_top_p_and_seed_and_name_only_what_is_on() {
        let exp = experiment(
            "[grid]\ntemperature = 1.0\ntop_p = [0.9, 1.0]\nmin_p = [0, 0.1]\n\
             repetition_penalty = 1.2\ntemperature_last = [false, true]\nseed = [1, 2]\n",
        );
        assert_eq!(
            ids(&expand(&exp)),
            [
                "sample_t1_k0_p0.9_rp1.2_s1",
                "sample_t1_k0_p0.9_rp1.2_s2",
                "sample_t1_k0_p0.9_rp1.2_tlast_s1",
                "sample_t1_k0_p0.9_rp1.2_tlast_s2",
                "sample_t1_k0_p0.9_minp0.1_rp1.2_s1",
                "sample_t1_k0_p0.9_minp0.1_rp1.2_s2",
                "sample_t1_k0_p0.9_minp0.1_rp1.2_tlast_s1",
                "sample_t1_k0_p0.9_minp0.1_rp1.2_tlast_s2",
                "sample_t1_k0_p1_rp1.2_s1",
                "sample_t1_k0_p1_rp1.2_s2",
                "sample_t1_k0_p1_rp1.2_tlast_s1",
                "sample_t1_k0_p1_rp1.2_tlast_s2",
                "sample_t1_k0_p1_minp0.1_rp1.2_s1",
                "sample_t1_k0_p1_minp0.1_rp1.2_s2",
                "sample_t1_k0_p1_minp0.1_rp1.2_tlast_s1",
                "sample_t1_k0_p1_minp0.1_rp1.2_tlast_s2",
            ]
        );
        // Every knob has its own tag, in the sweep order.
        let every = Processors {
            min_p: 0.05,
            typical_p: 0.9,
            epsilon_cutoff: 3e-4,
            eta_cutoff: 0.002,
            top_n_sigma: 1.5,
            repetition_penalty: 1.3,
            frequency_penalty: -0.5,
            presence_penalty: 0.25,
            no_repeat_ngram_size: 3,
            temperature_last: true,
        };
        assert_eq!(
            knob_suffix(&every),
            "_minp0.05_typ0.9_eps0.0003_eta0.002_nsig1.5_rp1.3_fp-0.5_pp0.25_nrng3_tlast"
        );
        assert_eq!(knob_suffix(&Processors::OFF), "");
        assert_eq!(
            knob_words(&Processors {
                min_p: 0.1,
                temperature_last: true,
                ..Processors::OFF
            }),
            "min_p=0.1, temperature_last"
        );
    }

    /// Keys written at their "off" value leave ids, and the JSON a setting's saved results
    /// are keyed by, exactly as they were without them.
    #[test]
    fn knobs_at_their_off_values_change_nothing() {
        let plain = experiment("[grid]\ntemperature = [0, 0.7]\ntop_k = 40\nseed = 3\n");
        let off = experiment(
            "[grid]\ntemperature = [0, 0.7]\ntop_k = 40\nseed = 3\nmin_p = 0\ntypical_p = 1\n\
             epsilon_cutoff = 0\neta_cutoff = 0\ntop_n_sigma = 0\nrepetition_penalty = 1\n\
             frequency_penalty = 0\npresence_penalty = 0\nno_repeat_ngram_size = 0\n\
             temperature_last = false\n",
        );
        let (a, b) = (expand(&plain), expand(&off));
        assert_eq!(a, b);
        assert_eq!(ids(&a), ["greedy", "sample_t0.7_k40_p1_s3"]);
        let json = serde_json::to_string(&a.settings[1]).unwrap();
        assert_eq!(
            json,
            "{\"strategy\":\"sample\",\"temperature\":0.7,\"top_k\":40,\"top_p\":1.0,\
             \"seed\":3,\"num_beams\":1,\"length_penalty\":null,\"early_stopping\":null,\
             \"samples\":4}"
        );
        let with = Setting {
            processors: Processors {
                min_p: 0.1,
                ..Processors::OFF
            },
            ..a.settings[1].clone()
        };
        assert!(
            serde_json::to_string(&with)
                .unwrap()
                .ends_with("\"samples\":4,\"min_p\":0.1}")
        );
    }

    /// Argmax ignores the truncation filters and `temperature_last`, not the penalties:
    /// temperature-0 points fold by their penalties alone.
    #[test]
    fn greedy_folds_by_its_penalties() {
        let exp = experiment(
            "[grid]\ntemperature = 0\nmin_p = [0, 0.2]\nrepetition_penalty = [1, 1.5]\n\
             no_repeat_ngram_size = [0, 3]\ntemperature_last = [false, true]\n",
        );
        let expansion = expand(&exp);
        assert_eq!(
            ids(&expansion),
            [
                "greedy",
                "greedy_nrng3",
                "greedy_rp1.5",
                "greedy_rp1.5_nrng3"
            ]
        );
        // 16 points, 4 settings.
        assert_eq!(expansion.folded_greedy, 12);
        assert!(
            expansion
                .settings
                .iter()
                .all(|s| s.processors == s.processors.penalties_only())
        );
    }

    #[test]
    fn planned_tokens_counts_rows_prompts_and_length() {
        let exp = experiment(
            "[grid]\ntemperature = [0, 0.5]\nseed = [1, 2]\n[beam]\nnum_beams = [4, 8]\nnum_return_sequences = 2\n",
        );
        let settings = expand(&exp).settings;
        // greedy: 1 row; two sampling settings: 4 rows each; beams: 4 and 8 rows.
        // 3 prompts × 10 tokens × (1 + 4 + 4 + 4 + 8) rows.
        assert_eq!(planned_tokens(&exp, &settings), 3 * 10 * 21);
        assert_eq!(planned_tokens(&exp, &[]), 0);
    }
}
