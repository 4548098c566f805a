//! Which beam setting the `*_vs_beam` columns subtract, and the warnings about beam settings
//! that came out the same: judgements on finished results, apart from how they were made.

use crate::report::tables;
use crate::spec::experiment::{Baseline, Experiment};
use crate::spec::grid::{Setting, Strategy};

/// The mean log-probability per token of a beam setting's best hypotheses, as a phrase.
fn score_text(score: f64) -> String {
    format!("{score:.4}")
}

/// The beam setting the `*_vs_beam` columns subtract, and a line saying which and why when
/// there was a choice. Among several candidates (every beam setting, or those of the width
/// `baseline` names), the one whose best hypotheses have the highest mean log-probability
/// per token wins: the same score beam search maximises, without the length penalty that
/// differs between the candidates.
pub fn pick_baseline(
    exp: &Experiment,
    settings: &[Setting],
    scores: &[f64],
) -> (Option<usize>, Vec<String>) {
    let beam = |s: &Setting| s.strategy == Strategy::Beam;
    if let Some(Baseline::Setting(id)) = &exp.baseline {
        let found = settings.iter().position(|s| beam(s) && s.id() == *id);
        return (found, Vec::new());
    }
    let candidates: Vec<usize> = (0..settings.len())
        .filter(|&i| beam(&settings[i]))
        .filter(|&i| match exp.baseline {
            Some(Baseline::Width(n)) => settings[i].num_beams == n,
            _ => true,
        })
        .collect();
    let best = candidates
        .iter()
        .copied()
        // On a tie (identical beams, say) the first in `[beam]` order, not the last.
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
    let mut notes = Vec::new();
    if let Some(best) = best
        && candidates.len() > 1
    {
        let among = match exp.baseline {
            Some(Baseline::Width(n)) => format!("the beam settings with num_beams = {n}"),
            _ => "the beam settings".to_owned(),
        };
        let others: Vec<String> = candidates
            .iter()
            .filter(|&&i| i != best)
            .map(|&i| format!("{} {}", settings[i].id(), score_text(scores[i])))
            .collect();
        let tied = candidates
            .iter()
            .filter(|&&i| i != best && scores[i] == scores[best])
            .count();
        let tie = if tied > 0 {
            ", tied, so the first in [beam] order"
        } else {
            ""
        };
        notes.push(format!(
            "baseline: {} ({}), the highest mean log-probability per token of the best \
             hypotheses among {among}{tie} (others: {}); name a setting id in baseline to \
             choose",
            settings[best].id(),
            score_text(scores[best]),
            others.join(", ")
        ));
    }
    (best, notes)
}

/// A beam setting's hypotheses (token ids, in saved order), and whether any of them ended
/// at end-of-text.
pub struct Beams {
    pub tokens: Vec<Vec<u32>>,
    pub any_ended: bool,
}

/// A warning for each beam width whose length penalties all gave the same hypotheses, so
/// that the rows differ in name only. As in transformers, the penalty only ranks finished
/// hypotheses by length; when none ends before `max_new_tokens`, all have one length and
/// the penalty cannot change anything.
pub fn same_beams_warnings(settings: &[Setting], beams: &[Option<Beams>]) -> Vec<String> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, s) in settings.iter().enumerate() {
        if beams[i].is_none() {
            continue;
        }
        let same_search = |j: &usize| {
            let o = &settings[*j];
            o.num_beams == s.num_beams
                && o.early_stopping == s.early_stopping
                && o.samples == s.samples
        };
        match groups.iter_mut().find(|g| same_search(&g[0])) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .filter_map(|g| {
            let first = beams[g[0]].as_ref()?;
            let all_same = g
                .iter()
                .all(|&i| beams[i].as_ref().is_some_and(|b| b.tokens == first.tokens));
            if !all_same {
                return None;
            }
            let penalties: Vec<String> = g
                .iter()
                .map(|&i| tables::number(settings[i].length_penalty.unwrap_or(1.0), 6))
                .collect();
            let why = if first.any_ended {
                "the penalty reordered no finished hypotheses"
            } else {
                "no hypothesis ended before max_new_tokens, so all have one length and the \
                 penalty, which only ranks finished hypotheses by length, cannot change them \
                 (as in transformers)"
            };
            Some(format!(
                "warning: length_penalty {} give the same beams for num_beams = {}: {why}",
                penalties.join(", "),
                settings[g[0]].num_beams
            ))
        })
        .collect()
}
