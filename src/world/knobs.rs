//! The variation knobs of a `WorldConfig`: worlds lethe was never tuned on. The bundled world's
//! people have distinct first names, 40 cities, the same nine facts and two biographies each,
//! and questions framed as `Question: …\nAnswer:`; a method or threshold tuned there may lean on
//! any of that. These knobs make worlds whose people share first names (`given_names`) and
//! cities (`cities`) with the forget set, carry other answer types (`facts`, including the
//! made-up `member_code`) and other record counts per person (`facts`, `bios`), and frame their
//! questions differently (`prompt_format`). At their defaults they change nothing.
//!
//! This module owns checking the knobs (a world whose wrong answers cannot be drawn, or that
//! names an unknown fact, is refused here, before anything is generated) and the prompt
//! formats; `generate` draws the world from the checked `Knobs`.

use serde::{Deserialize, Serialize};

use super::generate::{
    given_name_pool, Fact, WorldConfig, WorldError, CITIES, MAX_GIVEN_NAMES, PERTURBED_PER_ANSWER,
    STANDARD_BIOS,
};

/// How a question record frames its question; the answer (with its leading space) follows the
/// prompt directly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    /// `Question: {q}\nAnswer:`, the standard world's.
    #[default]
    QuestionAnswer,
    /// `Q: {q}\nA:`
    Qa,
    /// `User: {q}\nAssistant:`
    Chat,
    /// `{q}`
    Plain,
}

impl PromptFormat {
    /// The prompt of a question record. None ends in whitespace, so that the answer's leading
    /// space starts a new pre-token.
    pub fn prompt(self, question: &str) -> String {
        match self {
            PromptFormat::QuestionAnswer => format!("Question: {question}\nAnswer:"),
            PromptFormat::Qa => format!("Q: {question}\nA:"),
            PromptFormat::Chat => format!("User: {question}\nAssistant:"),
            PromptFormat::Plain => question.to_string(),
        }
    }

    pub(super) fn is_standard(&self) -> bool {
        *self == PromptFormat::default()
    }
}

/// The knobs of a `WorldConfig`, checked: the pools and facts people are drawn from.
pub(super) struct Knobs {
    /// `None`: the standard nine facts, drawn per person.
    pub facts: Option<Vec<Fact>>,
    /// `None`: given names built from syllables.
    pub given_names: Option<Vec<String>>,
    pub cities: &'static [&'static str],
    pub bios: usize,
    pub prompt_format: PromptFormat,
}

/// Fewest distinct values a categorical fact needs: the answer and its wrong answers.
const MIN_POOL: usize = PERTURBED_PER_ANSWER + 1;

impl Knobs {
    /// Checks `config`'s knobs; every refusal names the knob and what it allows.
    pub(super) fn check(config: &WorldConfig) -> Result<Knobs, WorldError> {
        let out_of = |knob, value, allowed: String| WorldError::Knob {
            knob,
            value,
            allowed,
        };
        if config.given_names > MAX_GIVEN_NAMES {
            let allowed = format!("0 (syllable names) or 1 to {MAX_GIVEN_NAMES}");
            return Err(out_of("given_names", config.given_names, allowed));
        }
        if config.cities != 0 && !(MIN_POOL..=CITIES.len()).contains(&config.cities) {
            let allowed = format!(
                "0 (all {}) or {MIN_POOL} to {} (a birth place needs {PERTURBED_PER_ANSWER} \
                 wrong cities besides the right one)",
                CITIES.len(),
                CITIES.len()
            );
            return Err(out_of("cities", config.cities, allowed));
        }
        if config.bios > STANDARD_BIOS {
            let allowed = format!("0 to {STANDARD_BIOS} biography records per person");
            return Err(out_of("bios", config.bios, allowed));
        }
        Ok(Knobs {
            facts: facts(&config.facts)?,
            given_names: (config.given_names > 0).then(|| given_name_pool(config.given_names)),
            cities: match config.cities {
                0 => &CITIES,
                n => &CITIES[..n],
            },
            bios: config.bios,
            prompt_format: config.prompt_format,
        })
    }
}

/// The facts `keys` name, in order (`None` when empty: the standard facts); an unknown or
/// repeated key (two records would share an id) is refused.
fn facts(keys: &[String]) -> Result<Option<Vec<Fact>>, WorldError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let mut facts = Vec::with_capacity(keys.len());
    for key in keys {
        let fact = Fact::from_key(key).ok_or_else(|| WorldError::UnknownFact {
            key: key.clone(),
            valid: Fact::ALL.map(Fact::key).join(", "),
        })?;
        if facts.contains(&fact) {
            return Err(WorldError::RepeatedFact { key: key.clone() });
        }
        facts.push(fact);
    }
    Ok(Some(facts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::record::Record;
    use crate::world::{generate, subjects, World};
    use std::collections::{BTreeMap, BTreeSet};

    fn world(config: WorldConfig) -> World {
        generate(&config).unwrap()
    }

    /// A small varied world: 50 trained people, 10 held out.
    fn small(vary: impl FnOnce(&mut WorldConfig)) -> World {
        let mut config = WorldConfig {
            people: 50,
            holdout_people: 10,
            ..Default::default()
        };
        vary(&mut config);
        world(config)
    }

    /// Every person's records (trained and holdout), by subject.
    fn by_person(w: &World) -> BTreeMap<&str, Vec<&Record>> {
        let mut people: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for r in w.train_full.iter().chain(&w.holdout) {
            if let Some(s) = r.subject.as_deref() {
                people.entry(s).or_default().push(r);
            }
        }
        people
    }

    fn refusal(vary: impl FnOnce(&mut WorldConfig)) -> String {
        let mut config = WorldConfig::default();
        vary(&mut config);
        generate(&config).unwrap_err().to_string()
    }

    #[test]
    fn default_knobs_change_nothing() {
        let spelled = r#"{"given_names": 0, "cities": 0, "facts": [], "bios": 2,
                          "prompt_format": "question_answer"}"#;
        let config: WorldConfig = serde_json::from_str(spelled).unwrap();
        assert_eq!(config, WorldConfig::default());
        assert_eq!(world(config), world(WorldConfig::default()));
        let json = serde_json::to_value(WorldConfig::default()).unwrap();
        for knob in ["given_names", "cities", "facts", "bios", "prompt_format"] {
            assert!(json.get(knob).is_none(), "{knob} is written at its default");
        }
    }

    #[test]
    fn varied_configs_round_trip_through_json() {
        let config = WorldConfig {
            given_names: 8,
            cities: 6,
            facts: vec!["member_code".into(), "phone".into()],
            bios: 1,
            prompt_format: PromptFormat::Chat,
            ..Default::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""prompt_format":"chat""#), "{json}");
        assert_eq!(serde_json::from_str::<WorldConfig>(&json).unwrap(), config);
        let typo = serde_json::from_str::<WorldConfig>(r#"{"city": 5}"#).unwrap_err();
        assert!(typo.to_string().contains("unknown field `city`"), "{typo}");
    }

    #[test]
    fn shared_given_names_occur_with_unique_full_names() {
        let w = small(|c| c.given_names = 3);
        let pool = given_name_pool(3);
        let names: Vec<String> = subjects(&w.train_full)
            .into_iter()
            .chain(subjects(&w.holdout))
            .collect();
        let given: BTreeSet<&str> = names.iter().map(|n| n.split(' ').next().unwrap()).collect();
        assert_eq!(given, pool.iter().map(String::as_str).collect());
        let surnames: BTreeSet<&str> = names
            .iter()
            .filter_map(|n| n.split_once(' '))
            .map(|p| p.1)
            .collect();
        assert_eq!(
            surnames.len(),
            60,
            "surnames, hence full names, stay unique"
        );
        // A forgotten person shares a first name with someone kept.
        let forgotten = subjects(&w.forget05);
        let kept = subjects(&w.retain05);
        let first = |n: &String| n.split(' ').next().unwrap().to_string();
        assert!(forgotten
            .iter()
            .any(|f| kept.iter().any(|k| first(k) == first(f))));
    }

    #[test]
    fn given_name_pool_is_distinct_up_to_its_maximum() {
        let pool = given_name_pool(MAX_GIVEN_NAMES);
        let distinct: BTreeSet<&String> = pool.iter().collect();
        assert_eq!(distinct.len(), MAX_GIVEN_NAMES);
        assert_eq!(given_name_pool(2), ["Maren", "Liona"]);
    }

    #[test]
    fn only_the_first_n_cities_occur() {
        let w = small(|c| c.cities = 5);
        let (used, unused) = CITIES.split_at(5);
        let mut seen = BTreeSet::new();
        for r in w.train_full.iter().chain(&w.holdout) {
            let texts = std::iter::once(&r.text).chain(&r.perturbed);
            for word in texts.flat_map(|t| t.split(|c: char| !c.is_alphabetic())) {
                assert!(!unused.contains(&word), "{word} in {}", r.id);
                if used.contains(&word) {
                    seen.insert(word);
                }
            }
        }
        assert_eq!(seen.len(), 5, "every allowed city occurs: {seen:?}");
    }

    #[test]
    fn listed_facts_are_asked_in_order_with_member_codes() {
        let w = small(|c| c.facts = vec!["member_code".into(), "birth_place".into()]);
        let is_code = |a: &str| {
            let b = a.as_bytes();
            a.len() == 10
                && a.starts_with("MC-")
                && b[3..7].iter().all(u8::is_ascii_digit)
                && b[7] == b'-'
                && b[8..].iter().all(u8::is_ascii_uppercase)
        };
        for (name, records) in by_person(&w) {
            let ids: Vec<&str> = records
                .iter()
                .map(|r| r.id.split_once('-').unwrap().1)
                .collect();
            assert_eq!(
                ids,
                ["bio1", "bio2", "member_code", "birth_place"],
                "{name}"
            );
            let code = records[2];
            assert_eq!(
                code.prompt.as_deref().unwrap(),
                format!("Question: What is the membership code of {name}?\nAnswer:")
            );
            let answer = code.answer.as_deref().unwrap();
            assert!(is_code(&answer[1..]), "{answer}");
            assert!(
                code.perturbed.iter().all(|p| is_code(&p[1..])),
                "{:?}",
                code.perturbed
            );
            assert!(
                records[1].text.contains(&answer[1..]),
                "{}",
                records[1].text
            );
        }
    }

    #[test]
    fn biographies_mention_only_the_facts_a_person_has() {
        let w = small(|c| c.facts = vec!["hobby".into(), "phone".into(), "diagnosis".into()]);
        for (name, records) in by_person(&w) {
            let value = |i: usize| records[i].answer.as_deref().unwrap().trim_start();
            let surname = name.split_once(' ').unwrap().1;
            assert_eq!(records[0].text, format!("{name} enjoys {}.", value(2)));
            assert_eq!(
                records[1].text,
                format!(
                    "The phone number of {name} is {}. {surname} was diagnosed with {}.",
                    value(3),
                    value(4)
                )
            );
        }
    }

    #[test]
    fn bios_sets_the_biography_records_per_person() {
        for bios in 0..=2 {
            let w = small(|c| c.bios = bios);
            for (name, records) in by_person(&w) {
                let count = records.iter().filter(|r| r.answer.is_none()).count();
                assert_eq!(count, bios, "{name}");
                assert_eq!(records.len(), bios + 9, "{name}");
            }
        }
        // Without the facts of the life biography, the one biography is the contact one.
        let w = small(|c| {
            c.bios = 1;
            c.facts = vec!["email".into()];
        });
        for records in by_person(&w).values() {
            assert!(records[0].text.contains('@'), "{}", records[0].text);
        }
    }

    #[test]
    fn every_prompt_format_frames_every_question() {
        let frames = [
            (
                PromptFormat::QuestionAnswer,
                "question_answer",
                "Question: ",
                "\nAnswer:",
            ),
            (PromptFormat::Qa, "qa", "Q: ", "\nA:"),
            (PromptFormat::Chat, "chat", "User: ", "\nAssistant:"),
            (PromptFormat::Plain, "plain", "", "?"),
        ];
        for (format, name, head, tail) in frames {
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            let w = small(|c| c.prompt_format = format);
            // train_full holds the utility set and the canary copies too.
            let questions = w.train_full.iter().chain(&w.holdout);
            let mut count = 0;
            for r in questions.filter(|r| r.answer.is_some() && !r.id.starts_with("canary")) {
                let (prompt, answer) = (r.prompt.as_deref().unwrap(), r.answer.as_deref().unwrap());
                assert!(
                    prompt.starts_with(head) && prompt.ends_with(tail),
                    "{prompt:?}"
                );
                assert!(answer.starts_with(' '), "{answer:?}");
                assert_eq!(r.text, format!("{prompt}{answer}"));
                count += 1;
            }
            assert_eq!(count, 60 * 9 + 200, "{name}");
            let carrier = "The secret access code of vault";
            assert!(w.canaries.iter().all(|c| c.text.starts_with(carrier)));
        }
    }

    #[test]
    fn unusable_knobs_are_refused_with_the_reason() {
        let cities = refusal(|c| c.cities = 4);
        assert!(
            cities.contains("cities = 4") && cities.contains("0 (all 40) or 5 to 40"),
            "{cities}"
        );
        assert!(refusal(|c| c.cities = 41).contains("cities = 41"));
        let bios = refusal(|c| c.bios = 3);
        assert!(
            bios.contains("bios = 3") && bios.contains("0 to 2"),
            "{bios}"
        );
        let given = refusal(|c| c.given_names = MAX_GIVEN_NAMES + 1);
        assert!(
            given.contains("given_names = 385") && given.contains("1 to 384"),
            "{given}"
        );
        let unknown = refusal(|c| c.facts = vec!["phone".into(), "shoe_size".into()]);
        assert!(unknown.contains("\"shoe_size\""), "{unknown}");
        assert!(
            unknown.contains("birth_date, birth_place") && unknown.contains("member_code"),
            "{unknown}"
        );
        let twice = refusal(|c| c.facts = vec!["phone".into(), "phone".into()]);
        assert!(twice.contains("\"phone\" is listed twice"), "{twice}");
    }
}
