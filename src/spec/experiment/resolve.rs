//! Checking and resolving: the TOML as written becomes an [`Experiment`] with every default
//! filled in, or an error that names the key, points at its value and says what is allowed.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::spec::experiment::diagnostics::position_of;
use crate::spec::experiment::prompts::{PROMPTS_EXTENSIONS, read_prompts_file};
use crate::spec::experiment::schema::{
    Flag, Int, Num, OneOrMany, RawBaseline, RawBeam, RawContrastive, RawExperiment, RawGrid,
    RawGrids, RawPrompts, RawScore, Scalar,
};
use crate::spec::experiment::{
    Baseline, BeamSpec, ContrastiveSpec, DEFAULT_BATCH_SIZE, Experiment, ExperimentError, GridSpec,
    Location, Position, Prompt, ScoreSpec, default_mauve_scaling,
};
use crate::spec::limits::{
    self, MAX_BATCH_SIZE, MAX_NEW_TOKENS, MAX_NUM_BEAMS, MAX_SAMPLES, MAX_SETTINGS,
};

/// What resolving needs to know besides the parsed file.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a Path,
    pub(super) cwd: &'a Path,
}

impl Ctx<'_> {
    pub(super) fn location(&self, span: Option<Range<usize>>) -> Location {
        Location {
            file: self.source.to_owned(),
            position: span.map(|s| position_of(self.text, s.start)),
        }
    }

    /// The value as the user wrote it, so messages quote `1.50` rather than `1.5`.
    fn written(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or("?").trim()
    }

    fn invalid(&self, span: Option<Range<usize>>, message: String) -> ExperimentError {
        ExperimentError::Invalid {
            at: self.location(span),
            message,
        }
    }

    /// `key = value is out of range; <allowed>` at the value.
    fn out_of_range(&self, key: &str, span: &Range<usize>, allowed: &str) -> ExperimentError {
        let value = self.written(span);
        self.invalid(
            Some(span.clone()),
            format!("{key} = {value} is out of range; {allowed}"),
        )
    }

    /// A scalar integer from 1 to `max`.
    fn bounded(
        &self,
        key: &str,
        value: &Spanned<Int>,
        max: usize,
        allowed: &str,
    ) -> Result<usize, ExperimentError> {
        match usize::try_from(value.get_ref().0) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(self.out_of_range(key, &value.span(), allowed)),
        }
    }

    /// Checks a list key: not empty, every value allowed by `check`, no value twice.
    fn list<T: Scalar, U: Copy + ValueKey>(
        &self,
        key: &str,
        raw: Spanned<OneOrMany<T>>,
        allowed: &str,
        check: impl Fn(T) -> Option<U>,
    ) -> Result<Vec<U>, ExperimentError> {
        let span = raw.span();
        let items = match raw.into_inner() {
            OneOrMany::One(v) => vec![Spanned::new(span.clone(), v)],
            OneOrMany::Many(items) => items,
        };
        if items.is_empty() {
            return Err(self.invalid(
                Some(span),
                format!("{key} = [] is empty; give at least one value ({allowed})"),
            ));
        }
        // A list longer than the cap on settings could never run; refusing it here also keeps
        // the checks below from working through millions of values.
        if items.len() > MAX_SETTINGS {
            return Err(self.invalid(
                Some(span),
                format!(
                    "{key} lists {} values; an experiment runs at most {MAX_SETTINGS} settings, \
                     so give fewer values",
                    items.len()
                ),
            ));
        }
        let mut values: Vec<U> = Vec::with_capacity(items.len());
        // Where each value was first written, by value: duplicates are found in linear time.
        let mut first_at: std::collections::HashMap<u64, usize> =
            std::collections::HashMap::with_capacity(items.len());
        for item in items {
            let item_span = item.span();
            let Some(value) = check(*item.get_ref()) else {
                return Err(self.out_of_range(key, &item_span, allowed));
            };
            if let Some(&first) = first_at.get(&value.key()) {
                let Position { line, column } = position_of(self.text, first);
                return Err(self.invalid(
                    Some(item_span.clone()),
                    format!(
                        "{key} lists {} twice (first at {line}:{column}); each value may appear once",
                        self.written(&item_span)
                    ),
                ));
            }
            first_at.insert(value.key(), item_span.start);
            values.push(value);
        }
        Ok(values)
    }

    /// A processor knob with a number value (see [`limits::KNOB_RULES`]); `off` when absent.
    fn number_knob(
        &self,
        key: &str,
        raw: Option<Spanned<OneOrMany<Num>>>,
        off: f64,
    ) -> Result<Vec<f64>, ExperimentError> {
        let (check, rule) = limits::knob_rule(key);
        match raw {
            Some(values) => self.list(key, values, &format!("{key} {rule}"), |Num(v)| {
                check(v).then_some(v + 0.0)
            }),
            None => Ok(vec![off]),
        }
    }

    /// `no_repeat_ngram_size`, in `[grid]` or `[beam]`; 0 (off) when absent.
    fn ngram_sizes(
        &self,
        raw: Option<Spanned<OneOrMany<Int>>>,
    ) -> Result<Vec<usize>, ExperimentError> {
        match raw {
            Some(n) => self.list(
                "no_repeat_ngram_size",
                n,
                "no_repeat_ngram_size must be an integer >= 0 (0 = off)",
                |Int(v)| usize::try_from(v).ok(),
            ),
            None => Ok(vec![0]),
        }
    }

    /// Finds a file named in the TOML: as given (the current directory), then beside the TOML.
    fn find_file(
        &self,
        key: &'static str,
        raw: &Spanned<String>,
    ) -> Result<PathBuf, ExperimentError> {
        let value = raw.get_ref();
        if value.trim().is_empty() {
            return Err(self.invalid(Some(raw.span()), format!("{key} is empty; give a path")));
        }
        let given = Path::new(value);
        let mut tried = vec![self.cwd.join(given)];
        if given.is_relative() {
            let beside = self.source.parent().unwrap_or(Path::new("")).join(given);
            if beside != tried[0] {
                tried.push(beside);
            }
        }
        match tried.iter().find(|p| p.exists()) {
            Some(found) => Ok(found.clone()),
            None => Err(ExperimentError::MissingFile {
                at: self.location(Some(raw.span())),
                key,
                value: value.clone(),
                tried,
            }),
        }
    }

    pub(super) fn resolve(&self, raw: RawExperiment) -> Result<Experiment, ExperimentError> {
        let name = self.name(raw.name.as_ref())?;
        let model = raw
            .model
            .as_ref()
            .map(|m| self.find_file("model", m))
            .transpose()?;
        let prompts = self.prompts(
            raw.prompts.map(RawPrompts::into_list),
            raw.prompts_file.as_ref(),
        )?;

        let max_new_tokens = match &raw.max_new_tokens {
            Some(v) => self.bounded(
                "max_new_tokens",
                v,
                MAX_NEW_TOKENS,
                &format!(
                    "max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS} (and below the \
                     model's context)"
                ),
            )?,
            None => {
                return Err(self.invalid(
                    None,
                    "missing max_new_tokens: how many tokens to generate per continuation, \
                     e.g. max_new_tokens = 200"
                        .to_owned(),
                ));
            }
        };
        let batch_size = match &raw.batch_size {
            Some(v) => self.bounded(
                "batch_size",
                v,
                MAX_BATCH_SIZE,
                &format!("batch_size must be an integer from 1 to {MAX_BATCH_SIZE}"),
            )?,
            None => DEFAULT_BATCH_SIZE,
        };

        let mut grid_span = None;
        let grids = match raw.grid {
            None => Vec::new(),
            Some(g) => {
                let span = g.span();
                grid_span = Some(span.clone());
                match g.into_inner() {
                    RawGrids::One(table) => vec![self.grid(*table)?],
                    RawGrids::Many(tables) if tables.is_empty() => {
                        return Err(self.invalid(
                            Some(span),
                            "grid = [] is empty; give at least one [[grid]] table, or leave \
                             grid out for beam search only"
                                .to_owned(),
                        ));
                    }
                    RawGrids::Many(tables) => tables
                        .into_iter()
                        .map(|t| self.grid(t))
                        .collect::<Result<_, _>>()?,
                }
            }
        };
        let beam_span = raw.beam.as_ref().map(|b| b.span());
        let beam = raw.beam.map(|b| self.beam(b)).transpose()?;
        let contrastive = raw.contrastive.map(|c| self.contrastive(c)).transpose()?;
        self.count_settings(&grids, grid_span, beam.as_ref(), beam_span)?;
        if grids.is_empty() && beam.is_none() && contrastive.is_none() {
            return Err(self.invalid(
                None,
                "no settings: add a [grid] table (sampling and greedy), a [beam] table \
                 (beam-search baselines), a [contrastive] table, or several"
                    .to_owned(),
            ));
        }

        let samples_allowed = format!(
            "samples must be an integer from 1 to {MAX_SAMPLES} (continuations per prompt and \
             sampling setting)"
        );
        let samples = match &raw.samples {
            Some(v) => self.bounded("samples", v, MAX_SAMPLES, &samples_allowed)?,
            None if grids.iter().any(|g| g.temperature.iter().any(|&t| t > 0.0)) => {
                return Err(self.invalid(
                    None,
                    "missing samples: the grid has sampling settings (temperature > 0); \
                     give samples = N, the continuations per prompt and sampling setting"
                        .to_owned(),
                ));
            }
            None => 1,
        };

        let baseline = match &raw.baseline {
            None => None,
            Some(b) => {
                let span = b.span();
                let value = self.written(&span);
                let Some(beam) = &beam else {
                    return Err(self.invalid(
                        Some(span),
                        format!(
                            "baseline = {value} needs a [beam] table; baseline picks which \
                             num_beams the difference columns compare to"
                        ),
                    ));
                };
                match b.get_ref() {
                    RawBaseline::Width(n) => match usize::try_from(*n) {
                        Ok(n) if beam.num_beams.contains(&n) => Some((Baseline::Width(n), span)),
                        _ => {
                            return Err(self.invalid(
                                Some(span),
                                format!(
                                    "baseline = {value} is not among num_beams {:?}; baseline \
                                     must be one of them or a beam setting id, or left out to \
                                     use the best-scoring beam setting",
                                    beam.num_beams
                                ),
                            ));
                        }
                    },
                    RawBaseline::Setting(id) => Some((Baseline::Setting(id.clone()), span)),
                }
            }
        };

        let score = raw.score.map(|s| self.score(s, &prompts)).transpose()?;
        let mut exp = Experiment {
            name,
            source: self.source.to_owned(),
            model,
            prompts,
            max_new_tokens,
            samples,
            batch_size,
            baseline: None,
            grids,
            beam,
            contrastive,
            score,
        };
        if let Some((baseline, span)) = baseline {
            // A setting id is checked against the ids the beam table expands to, which the
            // grid alone knows how to spell.
            if let Baseline::Setting(id) = &baseline {
                let ids: Vec<String> = crate::spec::grid::expand(&exp)
                    .settings
                    .iter()
                    .filter(|s| s.strategy == crate::spec::grid::Strategy::Beam)
                    .map(crate::spec::grid::Setting::id)
                    .collect();
                if !ids.contains(id) {
                    let value = self.written(&span);
                    return Err(self.invalid(
                        Some(span),
                        format!(
                            "baseline = {value} is not a beam setting of this experiment; \
                             baseline must be one of {} or a num_beams integer",
                            ids.join(", ")
                        ),
                    ));
                }
            }
            exp.baseline = Some(baseline);
        }
        Ok(exp)
    }

    /// Refuses a grid too big to run, from the lengths of its lists alone: expanding one of
    /// 10^8 settings would take minutes and gigabytes before anything could be said about it.
    /// Grid points are counted before temperature-0 points fold into one greedy setting.
    fn count_settings(
        &self,
        grids: &[GridSpec],
        grid_span: Option<Range<usize>>,
        beam: Option<&BeamSpec>,
        beam_span: Option<Range<usize>>,
    ) -> Result<(), ExperimentError> {
        let product = |lens: &[usize]| {
            lens.iter()
                .fold(1u128, |acc, &n| acc.saturating_mul(n as u128))
        };
        let mut parts = Vec::new();
        let mut grid_points = 0u128;
        for (i, g) in grids.iter().enumerate() {
            let lens = [
                g.temperature.len(),
                g.top_k.len(),
                g.top_p.len(),
                g.seed.len(),
            ];
            let knobs = g.processor_lengths();
            let n = product(&lens).saturating_mul(product(&knobs.map(|(_, n)| n)));
            let more: String = knobs
                .iter()
                .filter(|(_, n)| *n > 1)
                .map(|(key, n)| format!(" x {key} {n}"))
                .collect();
            grid_points = grid_points.saturating_add(n);
            let table = if grids.len() == 1 {
                "[grid]".to_owned()
            } else {
                format!("[[grid]] table {}", i + 1)
            };
            parts.push(format!(
                "{table}: {n} = temperature {} x top_k {} x top_p {} x seed {}{more}",
                lens[0], lens[1], lens[2], lens[3]
            ));
        }
        // An upper bound: combinations that do not apply are skipped when expanding.
        let beam_points = beam.map_or(0, |b| {
            let sampling = b.sampling.as_ref().map_or(1, |g| {
                product(&[
                    g.temperature.len(),
                    g.top_k.len(),
                    g.top_p.len(),
                    g.seed.len(),
                ])
                .saturating_mul(product(&g.processor_lengths().map(|(_, n)| n)))
            });
            product(&[
                b.num_beams.len(),
                b.length_penalty.len(),
                b.num_beam_groups.len(),
                b.diversity_penalty.len(),
                b.repetition_penalty.len(),
                b.no_repeat_ngram_size.len(),
                b.do_sample.len(),
            ])
            .saturating_mul(sampling)
        });
        if let Some(b) = beam {
            parts.push(format!(
                "[beam]: {beam_points} = num_beams {} x length_penalty {}{}",
                b.num_beams.len(),
                b.length_penalty.len(),
                if beam_points > product(&[b.num_beams.len(), b.length_penalty.len()]) {
                    " x its other lists"
                } else {
                    ""
                }
            ));
        }
        let total = grid_points.saturating_add(beam_points);
        if total <= MAX_SETTINGS as u128 {
            return Ok(());
        }
        if parts.len() > 4 {
            let more = parts.len() - 3;
            parts.truncate(3);
            parts.push(format!("and {more} more tables"));
        }
        let span = if grid_points >= beam_points {
            grid_span
        } else {
            beam_span
        };
        Err(self.invalid(
            span,
            format!(
                "the experiment has {total} settings ({}); at most {MAX_SETTINGS} are allowed: \
                 give fewer values, or split it into several experiments",
                parts.join("; ")
            ),
        ))
    }

    fn name(&self, raw: Option<&Spanned<String>>) -> Result<String, ExperimentError> {
        let (name, span) = match raw {
            Some(n) => (n.get_ref().clone(), Some(n.span())),
            None => (
                self.source
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                None,
            ),
        };
        // The name becomes a folder under results/, so it must be exactly one path component.
        let bad = name.trim().is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\'])
            || name.chars().any(char::is_control);
        if bad {
            return Err(self.invalid(
                span,
                format!(
                    "name = {name:?} is not a usable folder name; name must be non-empty, not \
                     \".\" or \"..\", and contain no / or \\ (results go to results/<name>/)"
                ),
            ));
        }
        Ok(name)
    }

    fn prompts(
        &self,
        inline: Option<Spanned<Vec<Spanned<String>>>>,
        file: Option<&Spanned<String>>,
    ) -> Result<Vec<Prompt>, ExperimentError> {
        match (inline, file) {
            (Some(_), Some(file)) => Err(self.invalid(
                Some(file.span()),
                "prompts and prompts_file are both given; give only one of them".to_owned(),
            )),
            (None, None) => Err(self.invalid(
                None,
                "missing prompts: give prompts = [\"...\"] or prompts_file = \"prompts.txt\" \
                 (or a .jsonl file)"
                    .to_owned(),
            )),
            (Some(list), None) => {
                let span = list.span();
                let list = list.into_inner();
                if list.is_empty() {
                    return Err(self.invalid(
                        Some(span),
                        "prompts = [] is empty; give at least one prompt".to_owned(),
                    ));
                }
                list.into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        if p.get_ref().is_empty() {
                            Err(self.invalid(
                                Some(p.span()),
                                format!(
                                    "prompts[{i}] is empty; a prompt needs at least one character"
                                ),
                            ))
                        } else {
                            Ok(Prompt {
                                text: p.into_inner(),
                                reference: None,
                            })
                        }
                    })
                    .collect()
            }
            (None, Some(file)) => {
                let value = file.get_ref();
                let known = Path::new(value)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| PROMPTS_EXTENSIONS.iter().any(|k| e.eq_ignore_ascii_case(k)));
                if !value.trim().is_empty() && !known {
                    return Err(self.invalid(
                        Some(file.span()),
                        format!(
                            "prompts_file = {value:?}: unknown kind of prompts file; supported \
                             extensions: .txt (one prompt per line) and .jsonl (JSON lines with \
                             \"prompt\" and optional \"reference\"); rename the file to one of them"
                        ),
                    ));
                }
                let path = self.find_file("prompts_file", file)?;
                let prompts = read_prompts_file(&path)?;
                if prompts.is_empty() {
                    return Err(self.invalid(
                        Some(file.span()),
                        format!(
                            "prompts_file = {:?} contains no prompts ({} is empty or only blank lines)",
                            file.get_ref(),
                            path.display()
                        ),
                    ));
                }
                Ok(prompts)
            }
        }
    }

    fn grid(&self, raw: RawGrid) -> Result<GridSpec, ExperimentError> {
        let temperature = match raw.temperature {
            Some(t) => self.list(
                "temperature",
                t,
                &format!("temperature {}", limits::temperature_rule()),
                |Num(v)| limits::valid_temperature(v).then_some(v + 0.0),
            )?,
            None => vec![1.0],
        };
        let top_k = match raw.top_k {
            Some(k) => self.list(
                "top_k",
                k,
                "top_k must be an integer >= 0 (0 = off)",
                |Int(v)| usize::try_from(v).ok(),
            )?,
            None => vec![0],
        };
        let top_p = match raw.top_p {
            Some(p) => self.list(
                "top_p",
                p,
                &format!("top_p {}", limits::TOP_P_RULE),
                |Num(v)| limits::valid_top_p(v).then_some(v),
            )?,
            None => vec![1.0],
        };
        let seed = match raw.seed {
            Some(s) => self.list("seed", s, "seed must be an integer >= 0", |Int(v)| {
                u64::try_from(v).ok()
            })?,
            None => vec![0],
        };
        let no_repeat_ngram_size = self.ngram_sizes(raw.no_repeat_ngram_size)?;
        let temperature_last = match raw.temperature_last {
            Some(t) => self.list(
                "temperature_last",
                t,
                "temperature_last must be true or false",
                |Flag(v)| Some(v),
            )?,
            None => vec![false],
        };
        Ok(GridSpec {
            temperature,
            top_k,
            top_p,
            seed,
            min_p: self.number_knob("min_p", raw.min_p, 0.0)?,
            typical_p: self.number_knob("typical_p", raw.typical_p, 1.0)?,
            epsilon_cutoff: self.number_knob("epsilon_cutoff", raw.epsilon_cutoff, 0.0)?,
            eta_cutoff: self.number_knob("eta_cutoff", raw.eta_cutoff, 0.0)?,
            top_n_sigma: self.number_knob("top_n_sigma", raw.top_n_sigma, 0.0)?,
            repetition_penalty: self.number_knob(
                "repetition_penalty",
                raw.repetition_penalty,
                1.0,
            )?,
            frequency_penalty: self.number_knob("frequency_penalty", raw.frequency_penalty, 0.0)?,
            presence_penalty: self.number_knob("presence_penalty", raw.presence_penalty, 0.0)?,
            no_repeat_ngram_size,
            temperature_last,
        })
    }

    fn beam(&self, raw: Spanned<RawBeam>) -> Result<BeamSpec, ExperimentError> {
        let table_span = raw.span();
        let raw = raw.into_inner();
        let num_beams = match raw.num_beams {
            Some(n) => self.list(
                "num_beams",
                n,
                &format!("num_beams must be an integer from 1 to {MAX_NUM_BEAMS}"),
                |Int(v)| {
                    usize::try_from(v)
                        .ok()
                        .filter(|n| (1..=MAX_NUM_BEAMS).contains(n))
                },
            )?,
            None => {
                return Err(self.invalid(
                    Some(table_span),
                    "[beam] is missing num_beams: the beam widths to run, e.g. num_beams = [4, 8]"
                        .to_owned(),
                ));
            }
        };
        let length_penalty = match raw.length_penalty {
            Some(lp) => self.list(
                "length_penalty",
                lp,
                "length_penalty must be a finite number (1.0 = transformers' default)",
                // `+ 0.0` turns -0.0 into 0.0, so ids and JSON never show "-0".
                |Num(v)| v.is_finite().then_some(v + 0.0),
            )?,
            None => vec![1.0],
        };
        let early_stopping = raw
            .early_stopping
            .map(|e| e.into_inner().0)
            .unwrap_or_default();
        let smallest = num_beams.iter().copied().min().unwrap_or(1);
        let num_return_sequences = match &raw.num_return_sequences {
            None => 1,
            Some(n) => match usize::try_from(n.get_ref().0) {
                Ok(k) if (1..=smallest).contains(&k) => k,
                _ => {
                    return Err(self.out_of_range(
                        "num_return_sequences",
                        &n.span(),
                        &format!(
                            "num_return_sequences must be an integer from 1 to the smallest \
                             num_beams ({smallest})"
                        ),
                    ));
                }
            },
        };
        let num_beam_groups = match raw.num_beam_groups {
            Some(g) => {
                let span = g.span();
                let groups = self.list(
                    "num_beam_groups",
                    g,
                    "num_beam_groups must be an integer >= 1 (1 = plain beam search)",
                    |Int(v)| usize::try_from(v).ok().filter(|&g| g >= 1),
                )?;
                for &g in &groups {
                    if let Some(&n) = num_beams.iter().find(|&&n| n % g != 0) {
                        return Err(self.invalid(
                            Some(span),
                            format!(
                                "num_beam_groups = {g} does not divide num_beams = {n}; every \
                                 num_beam_groups must divide every num_beams"
                            ),
                        ));
                    }
                }
                groups
            }
            None => vec![1],
        };
        let diversity_penalty = match raw.diversity_penalty {
            Some(d) => self.list(
                "diversity_penalty",
                d,
                "diversity_penalty must be a finite number >= 0 (it applies with \
                 num_beam_groups > 1, which needs it positive)",
                |Num(v)| (v.is_finite() && v >= 0.0).then_some(v + 0.0),
            )?,
            None => vec![0.0],
        };
        if num_beam_groups.iter().any(|&g| g > 1) && !diversity_penalty.iter().any(|&d| d > 0.0) {
            return Err(self.invalid(
                Some(table_span.clone()),
                "num_beam_groups > 1 needs a positive diversity_penalty (group beam search \
                 without one runs identical groups), e.g. diversity_penalty = 0.5"
                    .to_owned(),
            ));
        }
        let repetition_penalty =
            self.number_knob("repetition_penalty", raw.repetition_penalty, 1.0)?;
        let no_repeat_ngram_size = self.ngram_sizes(raw.no_repeat_ngram_size)?;
        let do_sample = match raw.do_sample {
            Some(d) => self.list(
                "do_sample",
                d,
                "do_sample must be true or false",
                |Flag(v)| Some(v),
            )?,
            None => vec![false],
        };
        let sampling_keys = [
            ("temperature", raw.temperature.as_ref().map(|v| v.span())),
            ("top_k", raw.top_k.as_ref().map(|v| v.span())),
            ("top_p", raw.top_p.as_ref().map(|v| v.span())),
            ("seed", raw.seed.as_ref().map(|v| v.span())),
            ("min_p", raw.min_p.as_ref().map(|v| v.span())),
            ("typical_p", raw.typical_p.as_ref().map(|v| v.span())),
            (
                "epsilon_cutoff",
                raw.epsilon_cutoff.as_ref().map(|v| v.span()),
            ),
            ("eta_cutoff", raw.eta_cutoff.as_ref().map(|v| v.span())),
            ("top_n_sigma", raw.top_n_sigma.as_ref().map(|v| v.span())),
            (
                "temperature_last",
                raw.temperature_last.as_ref().map(|v| v.span()),
            ),
        ];
        let sampling = if do_sample.contains(&true) {
            let grid = self.grid(RawGrid {
                temperature: raw.temperature,
                top_k: raw.top_k,
                top_p: raw.top_p,
                seed: raw.seed,
                min_p: raw.min_p,
                typical_p: raw.typical_p,
                epsilon_cutoff: raw.epsilon_cutoff,
                eta_cutoff: raw.eta_cutoff,
                top_n_sigma: raw.top_n_sigma,
                repetition_penalty: None,
                frequency_penalty: None,
                presence_penalty: None,
                no_repeat_ngram_size: None,
                temperature_last: raw.temperature_last,
            })?;
            if grid.temperature.contains(&0.0) {
                return Err(self.invalid(
                    sampling_keys[0].1.clone(),
                    "temperature = 0 in [beam] would be plain beam search; beam sampling needs \
                     a temperature above 0 (use do_sample = [false, true] for both)"
                        .to_owned(),
                ));
            }
            Some(grid)
        } else {
            if let Some((key, span)) = sampling_keys
                .iter()
                .find_map(|(key, span)| span.clone().map(|s| (key, s)))
            {
                return Err(self.invalid(
                    Some(span),
                    format!(
                        "{key} in [beam] applies to beam sampling only: add do_sample = true, \
                         or move {key} to [grid]"
                    ),
                ));
            }
            None
        };
        Ok(BeamSpec {
            num_beams,
            length_penalty,
            early_stopping,
            num_return_sequences,
            num_beam_groups,
            diversity_penalty,
            repetition_penalty,
            no_repeat_ngram_size,
            do_sample,
            sampling,
        })
    }

    /// `[score]`, checked against the prompts: MAUVE needs references, and at least as many
    /// references as clusters (every row has at least one text per prompt).
    fn score(
        &self,
        raw: Spanned<RawScore>,
        prompts: &[Prompt],
    ) -> Result<ScoreSpec, ExperimentError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let model = raw
            .model
            .as_ref()
            .map(|m| self.find_file("[score] model", m))
            .transpose()?;
        let mauve = raw.mauve.as_ref().is_some_and(|m| *m.get_ref());
        let references = prompts.iter().filter(|p| p.reference.is_some()).count();
        if mauve && references == 0 {
            return Err(self.invalid(
                raw.mauve.as_ref().map(|m| m.span()),
                "mauve = true needs human references to compare with: a prompts file whose \
                 entries have a `reference` (JSON lines with \"prompt\" and \"reference\", \
                 e.g. data/heldout.jsonl), or mauve = false"
                    .to_owned(),
            ));
        }
        let mauve_scaling = match &raw.mauve_scaling {
            Some(v) => match v.get_ref().0 {
                c if c > 0.0 && c.is_finite() => c,
                _ => return Err(self.out_of_range(
                    "mauve_scaling",
                    &v.span(),
                    "mauve_scaling must be a number > 0 (c in exp(−c·KL); mauve-text's default is 5)",
                )),
            },
            None => default_mauve_scaling(),
        };
        // Each row has at least one text per prompt with a reference, so at least
        // `references` texts a side.
        let mauve_clusters = match &raw.mauve_clusters {
            Some(v) => {
                let allowed = format!(
                    "mauve_clusters must be an integer from 2 to the {references} texts of the \
                     human side (one per reference), or left out for a tenth of it"
                );
                match usize::try_from(v.get_ref().0) {
                    Ok(k) if (2..=references).contains(&k) => Some(k),
                    _ => return Err(self.out_of_range("mauve_clusters", &v.span(), &allowed)),
                }
            }
            None => None,
        };
        if mauve && references < 2 {
            return Err(self.invalid(
                Some(span),
                format!(
                    "mauve = true needs at least 2 references to cluster, and the prompts have \
                     {references}; give more prompts with a `reference`, or mauve = false"
                ),
            ));
        }
        if model.is_none() && !mauve {
            return Err(self.invalid(
                Some(span),
                "[score] asks for nothing: give model = \"PATH\" (a scorer for every text), \
                 mauve = true, or both"
                    .to_owned(),
            ));
        }
        Ok(ScoreSpec {
            model,
            mauve,
            mauve_scaling,
            mauve_clusters,
        })
    }

    fn contrastive(
        &self,
        raw: Spanned<RawContrastive>,
    ) -> Result<ContrastiveSpec, ExperimentError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let missing = |key: &str, example: &str| {
            self.invalid(
                Some(span.clone()),
                format!("[contrastive] is missing {key}, e.g. {example}"),
            )
        };
        let penalty_alpha = match raw.penalty_alpha {
            Some(a) => self.list(
                "penalty_alpha",
                a,
                "penalty_alpha must be in [0, 1] (0 = greedy)",
                |Num(v)| (0.0..=1.0).contains(&v).then_some(v + 0.0),
            )?,
            None => return Err(missing("penalty_alpha", "penalty_alpha = [0.6]")),
        };
        let top_k = match raw.top_k {
            Some(k) => self.list(
                "top_k",
                k,
                "top_k must be an integer >= 1 (the candidates re-ranked per step)",
                |Int(v)| usize::try_from(v).ok().filter(|&k| k >= 1),
            )?,
            None => return Err(missing("top_k", "top_k = [4]")),
        };
        if penalty_alpha.len() * top_k.len() > MAX_SETTINGS {
            return Err(self.invalid(
                Some(span),
                format!(
                    "[contrastive] has {} settings (penalty_alpha {} x top_k {}); at most \
                     {MAX_SETTINGS} are allowed: give fewer values",
                    penalty_alpha.len() * top_k.len(),
                    penalty_alpha.len(),
                    top_k.len()
                ),
            ));
        }
        Ok(ContrastiveSpec {
            penalty_alpha,
            top_k,
        })
    }
}

/// A list value's identity for finding duplicates: equal values, and only those, share a key.
trait ValueKey {
    fn key(&self) -> u64;
}

impl ValueKey for f64 {
    fn key(&self) -> u64 {
        // `+ 0.0` makes -0 and 0 one value, as `==` does; lists never hold NaN.
        (self + 0.0).to_bits()
    }
}

impl ValueKey for usize {
    fn key(&self) -> u64 {
        *self as u64
    }
}

impl ValueKey for bool {
    fn key(&self) -> u64 {
        *self as u64
    }
}

impl ValueKey for u64 {
    fn key(&self) -> u64 {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::beam::EarlyStopping;
    use crate::spec::experiment::test_support::*;

    #[test]
    fn full_example_resolves_with_every_field() {
        let text = r#"
name = "temps"
prompts = ["ROMEO:", "JULIET:"]
max_new_tokens = 200
samples = 64
batch_size = 32
baseline = 8
[grid]
temperature = [0.0, 0.5, 0.8, 1.0, 1.5]
top_k = [0, 50]
top_p = [0.9, 1.0]
seed = [1, 2]
[beam]
num_beams = [4, 8]
length_penalty = 1.0
early_stopping = "never"
num_return_sequences = 2
"#;
        let exp = parse(text).unwrap();
        assert_eq!(exp.name, "temps");
        assert_eq!(exp.source, Path::new("experiments/bad.toml"));
        assert_eq!(exp.model, None);
        assert_eq!(exp.prompts.len(), 2);
        assert_eq!(exp.prompts[1].text, "JULIET:");
        assert_eq!(
            (exp.max_new_tokens, exp.samples, exp.batch_size),
            (200, 64, 32)
        );
        assert_eq!(exp.baseline, Some(Baseline::Width(8)));
        let grid = only(exp.grids);
        assert_eq!(grid.temperature, vec![0.0, 0.5, 0.8, 1.0, 1.5]);
        assert_eq!(grid.top_k, vec![0, 50]);
        assert_eq!(grid.top_p, vec![0.9, 1.0]);
        assert_eq!(grid.seed, vec![1, 2]);
        let beam = exp.beam.unwrap();
        assert_eq!(beam.num_beams, vec![4, 8]);
        assert_eq!(beam.length_penalty, vec![1.0]);
        assert_eq!(beam.early_stopping, EarlyStopping::Never);
        assert_eq!(beam.num_return_sequences, 2);
    }

    #[test]
    fn defaults_fill_absent_keys() {
        let exp = parse(&format!("{PROMPTS}[grid]\n")).unwrap();
        assert_eq!(exp.name, "bad");
        assert_eq!(exp.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(exp.baseline, None);
        assert_eq!(only(exp.grids), GridSpec::default());
        assert!(exp.beam.is_none());

        let exp = parse(&format!("{PROMPTS}[beam]\nnum_beams = 2\n")).unwrap();
        assert!(
            exp.grids.is_empty(),
            "no [grid] with [beam] means beam only"
        );
        let beam = exp.beam.unwrap();
        assert_eq!(beam.length_penalty, vec![1.0]);
        assert_eq!(beam.early_stopping, EarlyStopping::Heuristic);
        assert_eq!(beam.num_return_sequences, 1);
    }

    #[test]
    fn samples_is_required_only_when_something_samples() {
        let base = "prompts = [\"a\"]\nmax_new_tokens = 5\n";
        let err = parse(&format!("{base}[grid]\ntemperature = [0, 0.5]\n")).unwrap_err();
        assert_eq!(
            err.location().unwrap().position,
            None,
            "a missing key has no position"
        );
        assert!(
            err.to_string()
                .starts_with("experiments/bad.toml: missing samples"),
            "{err}"
        );
        let exp = parse(&format!("{base}[grid]\ntemperature = 0\n")).unwrap();
        assert_eq!(exp.samples, 1);
        let exp = parse(&format!("{base}[beam]\nnum_beams = 3\n")).unwrap();
        assert_eq!(exp.samples, 1);
    }

    #[test]
    fn the_documented_example_message_is_exact() {
        let text = "name = \"t\"\nprompts = [\"a\"]\nmax_new_tokens = 5\nsamples = 2\n\n[grid]\ntop_p = [0.9, 1.5]\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "experiments/bad.toml:7:15: top_p = 1.5 is out of range; top_p must be in (0, 1] (1.0 = off)"
        );
        assert!(matches!(err, ExperimentError::Invalid { .. }));
    }

    #[test]
    fn out_of_range_values_point_at_the_value() {
        // PROMPTS is three lines, so the first table line is 4 and its first key line 5.
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        fails_at(
            &grid("temperature = -0.5"),
            5,
            15,
            "temperature = -0.5 is out of range; temperature must be 0 (greedy) or a finite number >= 1e-6",
        );
        fails_at(
            &grid("temperature = [1.0, inf]"),
            5,
            21,
            "temperature = inf is out of range",
        );
        fails_at(
            &grid("temperature = nan"),
            5,
            15,
            "temperature = nan is out of range",
        );
        fails_at(
            &grid("top_p = [0.0]"),
            5,
            10,
            "top_p = 0.0 is out of range; top_p must be in (0, 1]",
        );
        fails_at(
            &grid("top_k = [50, -1]"),
            5,
            14,
            "top_k = -1 is out of range; top_k must be an integer >= 0 (0 = off)",
        );
        fails_at(
            &grid("seed = -3"),
            5,
            8,
            "seed = -3 is out of range; seed must be an integer >= 0",
        );

        let top = |first: &str, rest: &str| format!("prompts = [\"a\"]\n{first}\n{rest}[grid]\n");
        fails_at(
            &top("samples = 0", "max_new_tokens = 3\n"),
            2,
            11,
            "samples = 0 is out of range; samples must be an integer from 1 to 1000000",
        );
        fails_at(
            &top("max_new_tokens = 0", "samples = 1\n"),
            2,
            18,
            "max_new_tokens = 0 is out of range; max_new_tokens must be an integer from 1 to 1000000",
        );
        fails_at(
            &top("batch_size = 0", "max_new_tokens = 3\nsamples = 1\n"),
            2,
            14,
            "batch_size = 0 is out of range; batch_size must be an integer from 1 to 65536",
        );

        let beam = |lines: &str| format!("{PROMPTS}[beam]\n{lines}\n");
        fails_at(
            &beam("num_beams = [4, 0]"),
            5,
            17,
            "num_beams = 0 is out of range; num_beams must be an integer from 1 to 10000",
        );
        fails_at(
            &beam("num_beams = [4, 8]\nnum_return_sequences = 0"),
            6,
            24,
            "num_return_sequences must be an integer from 1 to the smallest num_beams (4)",
        );
        fails_at(
            &beam("num_beams = [8, 4]\nnum_return_sequences = 5"),
            6,
            24,
            "num_return_sequences = 5 is out of range",
        );
        fails_at(
            &beam("num_beams = 2\nlength_penalty = [1.0, -inf]"),
            6,
            24,
            "length_penalty = -inf is out of range; length_penalty must be a finite number",
        );
    }

    #[test]
    fn processor_knobs_out_of_range_point_at_the_value() {
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        for (line, column, message) in [
            (
                "min_p = [0.1, 1.5]",
                15,
                "min_p = 1.5 is out of range; min_p must be in [0, 1] (0 = off)",
            ),
            (
                "min_p = -0.1",
                9,
                "min_p = -0.1 is out of range; min_p must be in [0, 1]",
            ),
            (
                "typical_p = 0",
                13,
                "typical_p = 0 is out of range; typical_p must be in (0, 1] (1.0 = off)",
            ),
            ("typical_p = 1.01", 13, "typical_p = 1.01 is out of range"),
            (
                "epsilon_cutoff = -0.001",
                18,
                "epsilon_cutoff = -0.001 is out of range; epsilon_cutoff must be in [0, 1) (0 = off)",
            ),
            (
                "eta_cutoff = [0.001, -1]",
                22,
                "eta_cutoff = -1 is out of range; eta_cutoff must be in [0, 1)",
            ),
            ("eta_cutoff = 1", 14, "eta_cutoff = 1 is out of range"),
            (
                "top_n_sigma = -1",
                15,
                "top_n_sigma = -1 is out of range; top_n_sigma must be a finite number >= 0",
            ),
            (
                "repetition_penalty = 0",
                22,
                "repetition_penalty = 0 is out of range; repetition_penalty must be a finite number > 0",
            ),
            (
                "repetition_penalty = -1.2",
                22,
                "repetition_penalty = -1.2 is out of range",
            ),
            (
                "frequency_penalty = inf",
                21,
                "frequency_penalty = inf is out of range; frequency_penalty must be a finite number",
            ),
            (
                "presence_penalty = nan",
                20,
                "presence_penalty = nan is out of range",
            ),
            (
                "no_repeat_ngram_size = -2",
                24,
                "no_repeat_ngram_size = -2 is out of range; no_repeat_ngram_size must be an integer >= 0",
            ),
            (
                "min_p = [0.1, 0.1]",
                15,
                "min_p lists 0.1 twice (first at 5:10)",
            ),
            (
                "temperature_last = [true, true]",
                27,
                "temperature_last lists true twice (first at 5:21)",
            ),
        ] {
            fails_at(&grid(line), 5, column, message);
        }
        // A wrong type is a parse error at the value too.
        let err = parse(&grid("temperature_last = 1")).unwrap_err();
        assert_eq!(
            crate::util::exit::ExitStatus::exit(&err),
            crate::util::exit::Exit::BadInput
        );
        assert!(err.to_string().contains(":5:20"), "{err}");
        let err = parse(&grid("no_repeat_ngram_size = 2.5")).unwrap_err();
        assert!(err.to_string().contains(":5:24"), "{err}");
        // Negative OpenAI penalties are allowed: they encourage repetition.
        let exp = parse(&grid(
            "frequency_penalty = [-0.5, 0.5]\npresence_penalty = -2",
        ))
        .unwrap();
        let g = only(exp.grids);
        assert_eq!(g.frequency_penalty, [-0.5, 0.5]);
        assert_eq!(g.presence_penalty, [-2.0]);
    }

    #[test]
    fn processor_knobs_multiply_the_count_of_settings() {
        let err = parse(&format!(
            "{PROMPTS}[grid]\nmin_p = [{}]\ntypical_p = [{}]\n",
            (0..400)
                .map(|i| format!("{}", i as f64 / 400.0))
                .collect::<Vec<_>>()
                .join(", "),
            (1..=400)
                .map(|i| format!("{}", i as f64 / 400.0))
                .collect::<Vec<_>>()
                .join(", "),
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "160000 = temperature 1 x top_k 1 x top_p 1 x seed 1 x min_p 400 x typical_p 400"
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_lists_are_rejected_at_the_list() {
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        fails_at(
            &grid("temperature = []"),
            5,
            15,
            "temperature = [] is empty; give at least one value",
        );
        fails_at(&grid("seed = []"), 5, 8, "seed = [] is empty");
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = []\n"),
            5,
            13,
            "num_beams = [] is empty",
        );
        let text = "prompts = []\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        fails_at(
            text,
            1,
            11,
            "prompts = [] is empty; give at least one prompt",
        );
        let text = "prompts = [\"a\", \"\"]\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        fails_at(text, 1, 17, "prompts[1] is empty");
    }

    #[test]
    fn duplicates_name_the_value_and_both_places() {
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        fails_at(
            &grid("top_k = [0, 50, 50]"),
            5,
            17,
            "top_k lists 50 twice (first at 5:13)",
        );
        // 0.50 and 0.5 are the same temperature even though written differently.
        fails_at(
            &grid("temperature = [0.5, 0.50]"),
            5,
            21,
            "temperature lists 0.50 twice (first at 5:16)",
        );
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = [4, 4]\n"),
            5,
            17,
            "num_beams lists 4 twice",
        );
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = 4\nlength_penalty = [0.0, -0.0]\n"),
            6,
            24,
            "length_penalty lists -0.0 twice",
        );
    }

    #[test]
    fn prompts_must_come_from_exactly_one_place() {
        let text = "prompts = [\"a\"]\nprompts_file = \"p.txt\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        fails_at(text, 2, 16, "prompts and prompts_file are both given");
        let err = parse("max_new_tokens = 3\n[beam]\nnum_beams = 1\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("experiments/bad.toml: missing prompts"),
            "{err}"
        );
    }

    #[test]
    fn an_experiment_needs_settings_and_lengths() {
        let err = parse("prompts = [\"a\"]\nmax_new_tokens = 3\n").unwrap_err();
        assert!(err.to_string().contains("no settings"), "{err}");
        let err = parse("prompts = [\"a\"]\n[beam]\nnum_beams = 1\n").unwrap_err();
        assert!(err.to_string().contains("missing max_new_tokens"), "{err}");
        fails_at(
            &format!("{PROMPTS}\n[beam]\nlength_penalty = 1.0\n"),
            5,
            1,
            "[beam] is missing num_beams",
        );
    }

    #[test]
    fn baseline_must_be_a_beam_width() {
        let text = format!("baseline = 3\n{PROMPTS}[beam]\nnum_beams = [4, 8]\n");
        fails_at(&text, 1, 12, "baseline = 3 is not among num_beams [4, 8]");
        let text = format!("baseline = 4\n{PROMPTS}[grid]\n");
        fails_at(&text, 1, 12, "baseline = 4 needs a [beam] table");
        let text = format!("baseline = 8\n{PROMPTS}[beam]\nnum_beams = [4, 8]\n");
        assert_eq!(parse(&text).unwrap().baseline, Some(Baseline::Width(8)));
        let text = format!(
            "baseline = \"beam_n8_lp2\"\n{PROMPTS}[beam]\nnum_beams = [4, 8]\nlength_penalty = [1, 2]\n"
        );
        assert_eq!(
            parse(&text).unwrap().baseline,
            Some(Baseline::Setting("beam_n8_lp2".into()))
        );
        let text = format!("baseline = \"beam_n8_lp3\"\n{PROMPTS}[beam]\nnum_beams = [4, 8]\n");
        fails_at(&text, 1, 12, "is not a beam setting of this experiment");
    }

    #[test]
    fn names_must_be_a_single_folder() {
        fails_at(
            &format!("name = \"a/b\"\n{PROMPTS}[grid]\n"),
            1,
            8,
            "not a usable folder name",
        );
        fails_at(
            &format!("name = \"..\"\n{PROMPTS}[grid]\n"),
            1,
            8,
            "not a usable folder name",
        );
        let exp = Experiment::from_str(&format!("{PROMPTS}[grid]\n"), Path::new("x/my run.toml"))
            .unwrap();
        assert_eq!(exp.name, "my run");
    }

    #[test]
    fn regression_tiny_temperatures_are_refused_with_the_fix() {
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        let shown = fails_at(
            &grid("temperature = [0.5, 1e-7]"),
            5,
            21,
            "temperature = 1e-7 is out of range",
        );
        assert!(
            shown.contains("use 0 for greedy, or a temperature >= 1e-6"),
            "{shown}"
        );
        fails_at(&grid("temperature = 1e-300"), 5, 15, "temperature = 1e-300");
        let exp = parse(&grid("temperature = [0, 1e-6, -0.0]"));
        // -0.0 is 0, listed twice.
        assert!(exp.is_err());
        let exp = parse(&grid("temperature = [0, 1e-6]")).unwrap();
        assert_eq!(only(exp.grids).temperature, vec![0.0, 1e-6]);
    }

    #[test]
    fn regression_sizes_are_capped_by_name_at_the_value() {
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 5\nsamples = 2\nbatch_size = 65537\n[grid]\n",
            4,
            14,
            "batch_size = 65537 is out of range; batch_size must be an integer from 1 to 65536",
        );
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 5\nsamples = 2147483648\n[grid]\n",
            3,
            11,
            "samples = 2147483648 is out of range; samples must be an integer from 1 to 1000000",
        );
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 4611686018427387904\n[grid]\ntemperature = 0\n",
            2,
            18,
            "max_new_tokens = 4611686018427387904 is out of range",
        );
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = [4, 25000]\n"),
            5,
            17,
            "num_beams = 25000 is out of range; num_beams must be an integer from 1 to 10000",
        );
    }

    /// A grid of 10^8 settings made `validate` expand it for a minute and then abort; it is
    /// refused from the lengths of its lists, at once.
    #[test]
    fn regression_a_huge_grid_is_counted_before_it_is_expanded() {
        let values = |n: usize| {
            (1..=n)
                .map(|i| format!("{}", i as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let seeds = (0..100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "{PROMPTS}[grid]\ntemperature = [{}]\ntop_k = [{seeds}]\ntop_p = [{}]\nseed = [{seeds}]\n",
            values(100),
            values(100)
        );
        let started = std::time::Instant::now();
        let shown = parse(&text).unwrap_err().to_string();
        assert!(
            shown.starts_with("experiments/bad.toml:")
                && shown.contains(": the experiment has 100000000 settings"),
            "{shown}"
        );
        assert!(started.elapsed().as_secs_f64() < 5.0);
        assert!(
            shown.contains("temperature 100 x top_k 100 x top_p 100 x seed 100"),
            "{shown}"
        );
        assert!(shown.contains("at most 100000"), "{shown}");
        // At the cap is fine.
        let text = format!(
            "{PROMPTS}[grid]\ntemperature = [{}]\nseed = [{}]\n",
            values(1000),
            (0..100)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(parse(&text).is_ok());
        // A list of many values is checked for duplicates in linear time.
        let many = (0..100_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let started = std::time::Instant::now();
        assert!(parse(&format!("{PROMPTS}[grid]\nseed = [{many}]\n")).is_ok());
        assert!(started.elapsed().as_secs_f64() < 5.0);
    }

    #[test]
    fn relative_paths_try_the_current_directory_then_the_toml_folder() {
        let cwd = tempfile::tempdir().unwrap();
        let exps = tempfile::tempdir().unwrap();
        let source = exps.path().join("e.toml");
        std::fs::create_dir(exps.path().join("m")).unwrap();
        std::fs::write(exps.path().join("p.txt"), "from toml folder\n").unwrap();
        let text =
            "model = \"m\"\nprompts_file = \"p.txt\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";

        // Only beside the TOML: found there.
        let exp = Experiment::parse(text, &source, cwd.path()).unwrap();
        assert_eq!(exp.model, Some(exps.path().join("m")));
        assert_eq!(exp.prompts[0].text, "from toml folder");

        // Also in the current directory: the current directory wins.
        std::fs::write(cwd.path().join("p.txt"), "from cwd\n").unwrap();
        let exp = Experiment::parse(text, &source, cwd.path()).unwrap();
        assert_eq!(exp.prompts[0].text, "from cwd");

        // Nowhere: both tried paths are reported, at the value.
        let text =
            "model = \"gone\"\nprompts = [\"a\"]\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        let err = Experiment::parse(text, &source, cwd.path()).unwrap_err();
        let ExperimentError::MissingFile { key, tried, at, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*key, "model");
        assert_eq!(
            tried,
            &vec![cwd.path().join("gone"), exps.path().join("gone")]
        );
        assert_eq!(at.position, Some(Position { line: 1, column: 9 }));
        let shown = err.to_string();
        assert!(
            shown.contains("model = \"gone\" does not exist; tried"),
            "{shown}"
        );
        assert!(
            shown.contains(&format!(
                "{} and {}",
                tried[0].display(),
                tried[1].display()
            )),
            "{shown}"
        );
    }

    #[test]
    fn same_folder_is_tried_once_and_paths_stay_relative() {
        // A TOML in the current directory: both candidates are the same path.
        let text =
            "prompts_file = \"does-not-exist.txt\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        let err = Experiment::from_str(text, Path::new("e.toml")).unwrap_err();
        let ExperimentError::MissingFile { tried, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(tried, &vec![PathBuf::from("does-not-exist.txt")]);
        // Found through the real current directory (the crate root under cargo test): the
        // path stays as written, so run.json is portable.
        let text =
            "model = \"src\"\nprompts = [\"a\"]\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        let exp = Experiment::from_str(text, Path::new("elsewhere/e.toml")).unwrap();
        assert_eq!(exp.model, Some(PathBuf::from("src")));
        fails_at(
            "model = \"\"\nprompts = [\"a\"]\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n",
            1,
            9,
            "model is empty",
        );
    }

    #[test]
    fn grid_may_be_an_array_of_tables_each_with_defaults() {
        let exp = parse(&format!("{PROMPTS}{TABLE_1}")).unwrap();
        let spec = |t: &[f64], k: &[usize], p: &[f64]| GridSpec {
            temperature: t.to_vec(),
            top_k: k.to_vec(),
            top_p: p.to_vec(),
            ..GridSpec::default()
        };
        assert_eq!(
            exp.grids,
            vec![
                spec(&[0.0, 1.0, 0.9], &[0], &[1.0]),
                spec(&[1.0], &[40, 640], &[1.0]),
                spec(&[0.7], &[40], &[1.0]),
                spec(&[1.0], &[0], &[0.95]),
            ]
        );
        // One [[grid]] table is the same experiment as a [grid] table, and so is an inline
        // array of tables.
        let one = parse(&format!("{PROMPTS}[[grid]]\ntop_k = 5\n")).unwrap();
        let table = parse(&format!("{PROMPTS}[grid]\ntop_k = 5\n")).unwrap();
        assert_eq!(one, table);
        let inline = parse(&format!(
            "{PROMPTS}grid = [{{ temperature = [0.0, 1.0, 0.9] }}, {{ top_k = [40, 640] }}, \
             {{ top_k = 40, temperature = 0.7 }}, {{ top_p = 0.95 }}]\n"
        ))
        .unwrap();
        assert_eq!(inline.grids, exp.grids);
        // With [beam] after the tables.
        let exp = parse(&format!("{PROMPTS}{TABLE_1}[beam]\nnum_beams = 4\n")).unwrap();
        assert_eq!(exp.grids.len(), 4);
        assert_eq!(exp.beam.unwrap().num_beams, vec![4]);
    }

    #[test]
    fn duplicates_across_grid_tables_are_allowed_within_a_list_they_are_not() {
        let text = format!("{PROMPTS}[[grid]]\ntop_k = [0, 40]\n[[grid]]\ntop_k = [40, 0]\n");
        assert_eq!(parse(&text).unwrap().grids.len(), 2);
        // PROMPTS is three lines: the second table's header is line 6, its key line 7.
        fails_at(
            &format!("{PROMPTS}[[grid]]\ntop_k = 40\n[[grid]]\ntop_k = [40, 640, 40]\n"),
            7,
            19,
            "top_k lists 40 twice (first at 7:10)",
        );
    }

    #[test]
    fn errors_in_a_later_grid_table_point_into_it() {
        let tables = |second: &str| format!("{PROMPTS}[[grid]]\ntop_p = 0.9\n[[grid]]\n{second}\n");
        fails_at(
            &tables("temperature = 0.5\ntop_p = [0.9, 1.5]"),
            8,
            15,
            "top_p = 1.5 is out of range; top_p must be in (0, 1]",
        );
        fails_at(&tables("top_k = -1"), 7, 9, "top_k = -1 is out of range");
        fails_at(
            &tables("temperature = []"),
            7,
            15,
            "temperature = [] is empty",
        );
        fails_at(
            &tables("top_k = \"many\""),
            7,
            9,
            "expected an integer or a list of integers",
        );
        fails_at(
            &tables("tempreature = 0.5"),
            7,
            1,
            "unknown key `tempreature` in [grid]; did you mean `temperature`?",
        );
        fails_at(
            &format!("{PROMPTS}grid = [{{ top_k = 1 }}, {{ top_p = 2 }}]\n"),
            4,
            34,
            "top_p = 2 is out of range",
        );
        fails_at(
            &format!("{PROMPTS}grid = []\n"),
            4,
            8,
            "grid = [] is empty; give at least one [[grid]] table",
        );
        fails_at(
            &format!("{PROMPTS}grid = [1]\n"),
            4,
            9,
            "expected a [grid] table",
        );
        // [grid] and [[grid]] in one file is a TOML error, still with a place.
        let err = parse(&format!(
            "{PROMPTS}[grid]\ntop_k = 1\n[[grid]]\ntop_k = 2\n"
        ))
        .unwrap_err();
        assert!(matches!(err, ExperimentError::Parse { .. }), "{err:?}");
        assert!(err.location().unwrap().position.is_some(), "{err}");
    }

    #[test]
    fn samples_is_required_when_any_grid_table_samples() {
        let base = "prompts = [\"a\"]\nmax_new_tokens = 5\n";
        let err = parse(&format!(
            "{base}[[grid]]\ntemperature = 0\n[[grid]]\ntemperature = 0\ntop_k = 5\n[[grid]]\ntemperature = [0, 0.5]\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("missing samples"), "{err}");
        let exp = parse(&format!(
            "{base}[[grid]]\ntemperature = 0\n[[grid]]\ntemperature = 0\ntop_k = 5\n"
        ))
        .unwrap();
        assert_eq!(exp.samples, 1);
    }
}
