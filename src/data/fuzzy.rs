//! Fuzzy matching of an erasure request against a corpus. A request names subjects (people) or
//! gives example texts; the records that match are those whose subject or text is close to a
//! named subject (normalised Levenshtein similarity over the subject field and over every window
//! of the text with as many words as the name), or whose text shares character 3-grams with an
//! example (Jaccard overlap). Every match carries its score and the rule that produced it, so a
//! person can review the list (`lethe match`) before anything is unlearned.

use super::record::Record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What an erasure request names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub texts: Vec<String>,
}

/// One matched record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub id: String,
    pub score: f64,
    /// `subject:NAME` or `text:N` — what in the request it matched.
    pub by: String,
}

/// Lower case, letters and digits only, single spaces.
pub fn normalise(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Best normalised Levenshtein similarity of `name` to the record's subject or to any window of
/// its text with as many words as the name.
pub fn subject_score(name: &str, rec: &Record) -> f64 {
    let name = normalise(name);
    let n = name.split(' ').count();
    let mut best = rec.subject.as_deref().map_or(0.0, |s| {
        strsim::normalized_levenshtein(&name, &normalise(s))
    });
    let words: Vec<&str> = rec.text.split_whitespace().collect();
    for w in words.windows(n.max(1)) {
        best = best.max(strsim::normalized_levenshtein(
            &name,
            &normalise(&w.join(" ")),
        ));
    }
    best
}

fn trigrams(s: &str) -> BTreeSet<String> {
    let chars: Vec<char> = normalise(s).chars().collect();
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

/// Jaccard overlap of the character 3-grams of two texts.
pub fn text_score(example: &str, text: &str) -> f64 {
    let (a, b) = (trigrams(example), trigrams(text));
    let union = a.union(&b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// The records matching `request` at or above the thresholds, best first.
pub fn find_matches(
    request: &Request,
    records: &[Record],
    subject_min: f64,
    text_min: f64,
) -> Vec<Match> {
    let mut out = Vec::new();
    for rec in records {
        let mut best: Option<Match> = None;
        let mut offer = |score: f64, by: String, min: f64| {
            if score >= min && best.as_ref().is_none_or(|b| score > b.score) {
                best = Some(Match {
                    id: rec.id.clone(),
                    score,
                    by,
                });
            }
        };
        for s in &request.subjects {
            offer(subject_score(s, rec), format!("subject:{s}"), subject_min);
        }
        for (i, t) in request.texts.iter().enumerate() {
            offer(text_score(t, &rec.text), format!("text:{i}"), text_min);
        }
        out.extend(best);
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, text: &str, subject: Option<&str>) -> Record {
        Record {
            id: id.into(),
            text: text.into(),
            prompt: None,
            answer: None,
            subject: subject.map(Into::into),
            perturbed: vec![],
        }
    }

    #[test]
    fn misspelt_names_and_paraphrases_match_and_others_do_not() {
        let recs = vec![
            rec(
                "a",
                "Salia Oveova lives at 88 Fenridge Avenue.",
                Some("Salia Oveova"),
            ),
            rec("b", "The phone number of salia oveeva is +372 60.", None),
            rec("c", "Maren Oduya works as a baker.", Some("Maren Oduya")),
        ];
        let req = Request {
            subjects: vec!["Salia Oveova".into()],
            texts: vec![],
        };
        let m = find_matches(&req, &recs, 0.8, 0.5);
        let ids: Vec<&str> = m.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(m[0].score == 1.0 && m[1].score < 1.0 && m[1].score >= 0.8);
        let req = Request {
            subjects: vec![],
            texts: vec!["Maren Oduya works as a baker".into()],
        };
        assert_eq!(find_matches(&req, &recs, 0.8, 0.5)[0].id, "c");
    }
}
