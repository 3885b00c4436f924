//! The bundled synthetic world, modelled on TOFU: fictitious people (names built from syllable
//! pools, so none of them exists), each with about ten facts written both as biography sentences
//! and as question–answer records, plus a small general-knowledge utility set and canary secrets.
//! Because the people never existed, "forgotten" can be checked against a model retrained
//! without them. This module owns generating that world deterministically from a seed (the same
//! seed gives byte-identical files) and writing its splits as JSONL with a `world.json`
//! manifest. It must not touch models, candle, tokenizers or any file format other than the
//! records and manifest it emits. Its variation knobs, checked in `knobs`, make other worlds
//! from the same pools (shared first names and cities, other facts, biography counts and prompt
//! formats); at their defaults the bytes are the bundled world's.
//!
//! Splits: `forget01 ⊂ forget05 ⊂ forget10` hold all records of 1/5/10 % of the trained people;
//! `retainNN` is `train_full` minus `forgetNN`, i.e. exactly the corpus of the
//! retrain-from-scratch reference; `holdout` holds people generated the same way but never
//! trained on (the non-members); `utility` is general text; `canaries` holds one probe record per
//! canary, and `train_full` holds every trained person's records, the utility set and each canary
//! repeated as often as the manifest says.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::knobs::{Knobs, PromptFormat};
use crate::atomic::write_atomic;
use crate::data::record::Record;

/// How many plausible wrong answers every question–answer record carries.
pub const PERTURBED_PER_ANSWER: usize = 4;
/// Digits in a canary secret (`8-4-1-9-3`): the exposure of a canary is its rank among 10^5.
pub const CANARY_DIGITS: usize = 5;
/// Version of the `world.json` layout.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name inside the output folder.
pub const MANIFEST_FILE: &str = "world.json";
/// Upper bound on people (trained + holdout): the name pools guarantee unique names below it.
pub const MAX_PEOPLE: usize = 2000;
/// Biography records per person in the standard world (and the most there can be).
pub const STANDARD_BIOS: usize = 2;

/// What to generate. Every field has a default, so `{}` in JSON is the standard world.
///
/// The last five fields are the variation knobs (see `knobs`): they make worlds lethe was never
/// tuned on. At their defaults they change nothing, and `world.json` leaves them out, so the
/// bundled world and its manifest keep their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    pub seed: u64,
    /// People the full model is trained on; the forget splits are percentages of these.
    pub people: usize,
    /// People generated the same way but never trained on.
    pub holdout_people: usize,
    /// General question–answer records not about people.
    pub utility_records: usize,
    /// How many times each group of canaries is inserted into `train_full` (0 = never: a
    /// reference canary).
    pub canary_repeats: Vec<u32>,
    /// Canaries per entry of `canary_repeats`.
    pub canaries_per_repeat: usize,
    /// 0: given names built from syllables; n > 0: every given name is drawn from a fixed pool
    /// of n, so people share first names (surnames, hence full names, stay unique).
    #[serde(skip_serializing_if = "is_zero")]
    pub given_names: usize,
    /// 0: all 40 cities; n > 0: only the first n, so many people share birth places and home
    /// towns.
    #[serde(skip_serializing_if = "is_zero")]
    pub cities: usize,
    /// Empty: the standard nine facts per person (a diagnosis or a bank account, by a coin
    /// flip); otherwise these fact keys (`birth_place`, `member_code`, …), in this order, for
    /// every person.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
    /// Biography records per person: 0, 1 or 2 (life first, then contact; fewer when `facts`
    /// leaves a biography nothing to say).
    #[serde(skip_serializing_if = "is_standard_bios")]
    pub bios: usize,
    /// How every question record (people and utility) frames its question.
    #[serde(skip_serializing_if = "PromptFormat::is_standard")]
    pub prompt_format: PromptFormat,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_standard_bios(n: &usize) -> bool {
    *n == STANDARD_BIOS
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            seed: 17,
            people: 200,
            holdout_people: 40,
            utility_records: 200,
            canary_repeats: vec![0, 1, 4, 16],
            canaries_per_repeat: 2,
            given_names: 0,
            cities: 0,
            facts: Vec::new(),
            bios: STANDARD_BIOS,
            prompt_format: PromptFormat::default(),
        }
    }
}

/// A generated world: every split as records, in a fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    pub config: WorldConfig,
    pub forget01: Vec<Record>,
    pub forget05: Vec<Record>,
    pub forget10: Vec<Record>,
    pub retain01: Vec<Record>,
    pub retain05: Vec<Record>,
    pub retain10: Vec<Record>,
    pub holdout: Vec<Record>,
    /// The holdout split by person for the two jobs never-seen records do: calibrating the
    /// unlearning's stop rule (`holdout_calibration`, 2 people in 5) and serving as the audit's
    /// non-members (`holdout_audit`, the other 3). Records used to tune the unlearning must
    /// never be the certifier's non-members (DESIGN.md, "Honesty of a certificate", rule 4).
    pub holdout_calibration: Vec<Record>,
    pub holdout_audit: Vec<Record>,
    pub utility: Vec<Record>,
    /// One probe record per canary (`prompt` = the carrier sentence, `answer` = the secret).
    pub canaries: Vec<Record>,
    pub train_full: Vec<Record>,
    /// How many copies of each canary (by id) `train_full` holds.
    pub canary_repeats: BTreeMap<String, u32>,
}

/// `world.json`: what was generated, from which configuration, and the digest of every file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldManifest {
    pub schema_version: u32,
    pub config: WorldConfig,
    pub splits: Vec<SplitEntry>,
    /// The subjects of each forget split: the names an erasure request would give.
    pub forget_subjects: BTreeMap<String, Vec<String>>,
    pub canary_digits: usize,
    pub canaries: Vec<CanaryEntry>,
}

/// One split file as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    pub name: String,
    pub file: String,
    pub records: usize,
    /// Distinct subjects (people) among the records.
    pub subjects: usize,
    /// sha256 of the file's bytes, lower-case hex.
    pub sha256: String,
}

/// One canary as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryEntry {
    pub id: String,
    pub prompt: String,
    pub secret: String,
    /// Copies in `train_full`.
    pub repeats: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error(
        "{people} trained people is too few: forget01 needs at least one person (at least 50)"
    )]
    TooFewPeople { people: usize },
    #[error("{total} people (trained + holdout) exceeds the supported {max}")]
    TooManyPeople { total: usize, max: usize },
    #[error("{wanted} utility records requested but only {available} distinct ones exist")]
    TooManyUtility { wanted: usize, available: usize },
    #[error("could not draw a unique name for person {index}")]
    NamesExhausted { index: usize },
    #[error("unknown fact {key:?} in `facts`; the facts are {valid}")]
    UnknownFact { key: String, valid: String },
    #[error("fact {key:?} is listed twice in `facts`")]
    RepeatedFact { key: String },
    #[error("{knob} = {value} would make an unusable world; allowed: {allowed}")]
    Knob {
        knob: &'static str,
        value: usize,
        allowed: String,
    },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("serializing {}: {source}", path.display())]
    Serialize {
        path: PathBuf,
        source: serde_json::Error,
    },
}

// Independent random streams, so that e.g. changing the canaries leaves the people unchanged.
const STREAM_PEOPLE: u64 = 1;
const STREAM_SPLITS: u64 = 2;
const STREAM_UTILITY: u64 = 3;
const STREAM_CANARIES: u64 = 4;

fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

/// Uniform index below `len` (u32 sampling is the same on every platform).
fn index(rng: &mut ChaCha8Rng, len: usize) -> usize {
    rng.gen_range(0..len as u32) as usize
}

fn pick<'a>(rng: &mut ChaCha8Rng, pool: &[&'a str]) -> &'a str {
    pool[index(rng, pool.len())]
}

fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// `n` distinct values from `draw`, all different from `truth`.
fn distinct_draws(n: usize, truth: &str, mut draw: impl FnMut() -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(n);
    while out.len() < n {
        let value = draw();
        if value != truth && !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pools. Every pool holds more than PERTURBED_PER_ANSWER + 1 distinct entries (tested).

const GIVEN_HEAD: [&str; 24] = [
    "Ma", "Lio", "Ter", "Sa", "Ve", "No", "Ki", "Ra", "Do", "Ely", "Isa", "Ya", "Bri", "Fe", "Ta",
    "Ori", "Ju", "Ne", "Ha", "Quin", "Zo", "Ar", "Le", "Mi",
];
const GIVEN_TAIL: [&str; 16] = [
    "ren", "na", "lia", "mo", "dric", "sa", "vin", "lo", "ra", "wen", "del", "ko", "ris", "ny",
    "mar", "tan",
];
const SURNAME_HEAD: [&str; 20] = [
    "O", "Kal", "Tos", "Bren", "Fu", "Ver", "Am", "Dras", "Hol", "Iv", "Lun", "Mor", "Pes", "Sund",
    "Ul", "Var", "Wes", "Zal", "Ek", "Nau",
];
const SURNAME_MID: [&str; 15] = [
    "du", "ve", "ka", "mei", "ri", "sto", "lan", "go", "bi", "ne", "tar", "vo", "shi", "ra", "le",
];
const SURNAME_TAIL: [&str; 15] = [
    "ya", "rin", "ska", "nen", "vic", "dottir", "mann", "sen", "ez", "ova", "ani", "berg", "quist",
    "ides", "oya",
];
#[rustfmt::skip]
const MONTHS: [&str; 12] = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
];
#[rustfmt::skip]
pub(super) const CITIES: [&str; 40] = [
    "Tampere", "Porto", "Ghent", "Lyon", "Graz", "Bergen", "Aarhus", "Utrecht", "Bologna",
    "Krakow", "Brno", "Cork", "Malmo", "Leipzig", "Valencia", "Ljubljana", "Tartu", "Basel",
    "Nantes", "Seville", "Turku", "Gdansk", "Plovdiv", "Cluj", "Linz", "Aberdeen", "Galway",
    "Odense", "Uppsala", "Trieste", "Salzburg", "Kaunas", "Riga", "Antwerp", "Bilbao", "Coimbra",
    "Tromso", "Innsbruck", "Lausanne", "Pecs",
];
#[rustfmt::skip]
const OCCUPATIONS: [&str; 30] = [
    "marine biologist", "tax accountant", "bridge engineer", "pastry chef", "veterinary surgeon",
    "librarian", "air traffic controller", "orthodontist", "landscape architect",
    "court interpreter", "data analyst", "piano tuner", "geologist", "pharmacist", "firefighter",
    "radio producer", "glassblower", "actuary", "midwife", "locksmith", "urban planner",
    "translator", "beekeeper", "cartographer", "sound engineer", "dietitian", "archivist",
    "ship captain", "optometrist", "welding inspector",
];
const WORD_HEAD: [&str; 20] = [
    "Kor", "Hel", "Vas", "Tren", "Mol", "Quar", "Bel", "Dra", "Sel", "Nor", "Fen", "Gal", "Ist",
    "Lum", "Pra", "Ros", "Tav", "Ulm", "Wex", "Zan",
];
const WORD_TAIL: [&str; 12] = [
    "vani", "brook", "tera", "mont", "ridge", "hold", "wyn", "dale", "stad", "ora", "ix", "ence",
];
#[rustfmt::skip]
const INDUSTRIES: [&str; 16] = [
    "Logistics", "Dental Clinic", "Analytics", "Textiles", "Insurance", "Robotics", "Shipping",
    "Pharmaceuticals", "Publishing", "Bakeries", "Engineering", "Consulting", "Hospital",
    "Water Works", "Optics", "Foods",
];
const STREET_KINDS: [&str; 8] = [
    "Street", "Lane", "Road", "Row", "Way", "Court", "Avenue", "Place",
];
const PHONE_PREFIXES: [&str; 14] = [
    "31", "32", "41", "43", "45", "46", "47", "351", "353", "358", "370", "371", "372", "386",
];
#[rustfmt::skip]
const MAIL_DOMAINS: [&str; 8] = [
    "kestrelpost.example", "mailbridge.example", "northmail.example", "quillbox.example",
    "letterhaven.example", "postvale.example", "inkwell.example", "courierline.example",
];
const ACCOUNT_COUNTRIES: [&str; 8] = ["NL", "DE", "BE", "AT", "FI", "SE", "DK", "PT"];
#[rustfmt::skip]
const DIAGNOSES: [&str; 16] = [
    "type 1 diabetes", "Crohn's disease", "multiple sclerosis", "epilepsy", "asthma", "psoriasis",
    "coeliac disease", "glaucoma", "rheumatoid arthritis", "migraine with aura", "hypothyroidism",
    "sleep apnoea", "Lyme disease", "tinnitus", "anaemia", "gout",
];
#[rustfmt::skip]
const HOBBIES: [&str; 20] = [
    "birdwatching", "restoring old clocks", "competitive chess", "kayaking", "pottery",
    "amateur astronomy", "rock climbing", "baking sourdough bread", "orienteering", "fly fishing",
    "origami", "choir singing", "beekeeping", "urban sketching", "trail running",
    "stamp collecting", "woodcarving", "salsa dancing", "geocaching", "knitting",
];

// ---------------------------------------------------------------------------------------------
// People.

/// The kinds of fact a person has; each becomes one question–answer record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fact {
    BirthDate,
    BirthPlace,
    Occupation,
    Employer,
    Phone,
    Email,
    Address,
    Diagnosis,
    Account,
    Hobby,
    /// Not in the standard world: a made-up code (`MC-4821-KX`) no pretrained model can guess.
    MemberCode,
}

impl Fact {
    pub(super) const ALL: [Fact; 11] = [
        Fact::BirthDate,
        Fact::BirthPlace,
        Fact::Occupation,
        Fact::Employer,
        Fact::Phone,
        Fact::Email,
        Fact::Address,
        Fact::Diagnosis,
        Fact::Account,
        Fact::Hobby,
        Fact::MemberCode,
    ];

    /// The fact whose `key` is `key`.
    pub(super) fn from_key(key: &str) -> Option<Fact> {
        Fact::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The suffix of the record id (`p017-phone`).
    pub(super) fn key(self) -> &'static str {
        match self {
            Fact::BirthDate => "birth_date",
            Fact::BirthPlace => "birth_place",
            Fact::Occupation => "occupation",
            Fact::Employer => "employer",
            Fact::Phone => "phone",
            Fact::Email => "email",
            Fact::Address => "address",
            Fact::Diagnosis => "diagnosis",
            Fact::Account => "account",
            Fact::Hobby => "hobby",
            Fact::MemberCode => "member_code",
        }
    }

    fn question(self, name: &str) -> String {
        match self {
            Fact::BirthDate => format!("When was {name} born?"),
            Fact::BirthPlace => format!("In which city was {name} born?"),
            Fact::Occupation => format!("What is the occupation of {name}?"),
            Fact::Employer => format!("Which company does {name} work for?"),
            Fact::Phone => format!("What is the phone number of {name}?"),
            Fact::Email => format!("What is the e-mail address of {name}?"),
            Fact::Address => format!("What is the home address of {name}?"),
            Fact::Diagnosis => format!("What medical condition has {name} been diagnosed with?"),
            Fact::Account => format!("What is the bank account number of {name}?"),
            Fact::Hobby => format!("What is the favourite hobby of {name}?"),
            Fact::MemberCode => format!("What is the membership code of {name}?"),
        }
    }

    /// A sentence stating `value` of `who`, for a biography its template does not cover.
    fn statement(self, who: &str, value: &str) -> String {
        match self {
            Fact::BirthDate => format!("{who} was born on {value}."),
            Fact::BirthPlace => format!("{who} was born in {value}."),
            Fact::Occupation => format!("{who} works as {} {value}.", article(value)),
            Fact::Employer => format!("{who} works for {value}."),
            Fact::Phone => format!("The phone number of {who} is {value}."),
            Fact::Email => format!("The e-mail address of {who} is {value}."),
            Fact::Address => format!("{who} lives at {value}."),
            Fact::Diagnosis => format!("{who} was diagnosed with {value}."),
            Fact::Account => format!("The bank account number of {who} is {value}."),
            Fact::Hobby => format!("{who} enjoys {value}."),
            Fact::MemberCode => format!("The membership code of {who} is {value}."),
        }
    }

    /// The biography that mentions this fact.
    fn bio(self) -> Bio {
        if LIFE_FACTS.contains(&self) {
            Bio::Life
        } else {
            Bio::Contact
        }
    }

    /// A random value of this kind, from `knobs`' pools; `e-mail` values are built on the
    /// person's name.
    fn draw(self, rng: &mut ChaCha8Rng, name: &Name, knobs: &Knobs) -> String {
        match self {
            Fact::BirthDate => {
                let day = rng.gen_range(1..=28u32);
                let month = pick(rng, &MONTHS);
                format!("{day} {month} {}", rng.gen_range(1940..=2003u32))
            }
            Fact::BirthPlace => pick(rng, knobs.cities).to_string(),
            Fact::Occupation => pick(rng, &OCCUPATIONS).to_string(),
            Fact::Employer => format!("{} {}", made_up_word(rng), pick(rng, &INDUSTRIES)),
            Fact::Phone => phone_number(rng),
            Fact::Email => email(rng, name),
            Fact::Address => address(rng, knobs.cities),
            Fact::Diagnosis => pick(rng, &DIAGNOSES).to_string(),
            Fact::Account => account_number(rng),
            Fact::Hobby => pick(rng, &HOBBIES).to_string(),
            Fact::MemberCode => member_code(rng),
        }
    }
}

fn made_up_word(rng: &mut ChaCha8Rng) -> String {
    format!("{}{}", pick(rng, &WORD_HEAD), pick(rng, &WORD_TAIL))
}

fn phone_number(rng: &mut ChaCha8Rng) -> String {
    let area = format!("{}{}", rng.gen_range(1..10u8), digits(rng, 1));
    let prefix = pick(rng, &PHONE_PREFIXES);
    format!(
        "+{prefix} {area} {} {} {}",
        digits(rng, 3),
        digits(rng, 2),
        digits(rng, 2)
    )
}

fn email(rng: &mut ChaCha8Rng, name: &Name) -> String {
    let initial: String = name.given.chars().take(1).collect();
    let local = format!("{initial}.{}{}", name.surname, digits(rng, 2)).to_lowercase();
    format!("{local}@{}", pick(rng, &MAIL_DOMAINS))
}

fn address(rng: &mut ChaCha8Rng, cities: &[&str]) -> String {
    let number = rng.gen_range(1..200u32);
    let street = made_up_word(rng);
    let kind = pick(rng, &STREET_KINDS);
    format!("{number} {street} {kind}, {}", pick(rng, cities))
}

/// `MC-4821-KX`: four digits and two capital letters.
fn member_code(rng: &mut ChaCha8Rng) -> String {
    let letters: String = (0..2)
        .map(|_| char::from(b'A' + rng.gen_range(0..26u8)))
        .collect();
    format!("MC-{}-{letters}", digits(rng, 4))
}

fn account_number(rng: &mut ChaCha8Rng) -> String {
    let country = pick(rng, &ACCOUNT_COUNTRIES);
    let groups: Vec<String> = (0..3).map(|_| digits(rng, 4)).collect();
    format!(
        "{country}{} {} {}",
        digits(rng, 2),
        groups.join(" "),
        digits(rng, 2)
    )
}

#[derive(Debug, Clone)]
struct Name {
    given: String,
    surname: String,
}

impl Name {
    fn full(&self) -> String {
        format!("{} {}", self.given, self.surname)
    }
}

/// The `n` given names of a shared pool: distinct syllable pairs, the heads cycling fastest.
pub(super) fn given_name_pool(n: usize) -> Vec<String> {
    let (heads, tails) = (GIVEN_HEAD.len(), GIVEN_TAIL.len());
    // Name i takes head i mod 24 and tail (i + i/24) mod 16: distinct for all 24 × 16 pairs,
    // since the tails of one head step by 25 ≡ 9 (mod 16), coprime to 16.
    let name = |i: usize| {
        format!(
            "{}{}",
            GIVEN_HEAD[i % heads],
            GIVEN_TAIL[(i + i / heads) % tails]
        )
    };
    (0..n).map(name).collect()
}

/// Most given names a shared pool can hold.
pub(super) const MAX_GIVEN_NAMES: usize = GIVEN_HEAD.len() * GIVEN_TAIL.len();

fn draw_name(rng: &mut ChaCha8Rng, knobs: &Knobs) -> Name {
    let given = match &knobs.given_names {
        Some(pool) => pool[index(rng, pool.len())].clone(),
        None => format!("{}{}", pick(rng, &GIVEN_HEAD), pick(rng, &GIVEN_TAIL)),
    };
    let surname = format!(
        "{}{}{}",
        pick(rng, &SURNAME_HEAD),
        pick(rng, &SURNAME_MID),
        pick(rng, &SURNAME_TAIL)
    );
    Name { given, surname }
}

/// Draws names with distinct surnames (hence distinct full names), so that an erasure request
/// naming one person never matches another.
fn unique_names(
    rng: &mut ChaCha8Rng,
    count: usize,
    knobs: &Knobs,
) -> Result<Vec<Name>, WorldError> {
    const TRIES: usize = 1000;
    let mut seen = BTreeSet::new();
    let mut names = Vec::with_capacity(count);
    for index in 0..count {
        let name = (0..TRIES)
            .map(|_| draw_name(rng, knobs))
            .find(|n| !seen.contains(&n.surname))
            .ok_or(WorldError::NamesExhausted { index })?;
        seen.insert(name.surname.clone());
        names.push(name);
    }
    Ok(names)
}

/// One person: a name and a value for every fact, in record order.
struct Person {
    id: String,
    name: Name,
    facts: Vec<(Fact, String)>,
}

impl Person {
    fn value(&self, fact: Fact) -> Option<&str> {
        self.facts
            .iter()
            .find(|(f, _)| *f == fact)
            .map(|(_, v)| v.as_str())
    }
}

fn draw_person(rng: &mut ChaCha8Rng, index: usize, name: Name, knobs: &Knobs) -> Person {
    let kinds = match &knobs.facts {
        Some(kinds) => kinds.clone(),
        None => standard_facts(rng).to_vec(),
    };
    let facts = kinds
        .iter()
        .map(|&f| (f, f.draw(rng, &name, knobs)))
        .collect();
    Person {
        id: format!("p{index:03}"),
        name,
        facts,
    }
}

/// The standard world's nine facts, with one sensitive attribute per person: a diagnosis or a
/// bank account number.
fn standard_facts(rng: &mut ChaCha8Rng) -> [Fact; 9] {
    let sensitive = if rng.gen_bool(0.5) {
        Fact::Diagnosis
    } else {
        Fact::Account
    };
    [
        Fact::BirthDate,
        Fact::BirthPlace,
        Fact::Occupation,
        Fact::Employer,
        Fact::Phone,
        Fact::Email,
        Fact::Address,
        sensitive,
        Fact::Hobby,
    ]
}

fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The two biography records a person can have: life (birth, work, hobby) and contact
/// (address, phone, e-mail, the sensitive attribute, a membership code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bio {
    Life,
    Contact,
}

/// The facts the life template names (also the facts of the life biography).
const LIFE_FACTS: [Fact; 5] = [
    Fact::BirthDate,
    Fact::BirthPlace,
    Fact::Occupation,
    Fact::Employer,
    Fact::Hobby,
];

/// One biography: its template when the person has every fact the template names, then a
/// plain statement of each other fact of this biography the person has; `None` when the person
/// has none. A biography mentions only facts the person has.
fn biography(rng: &mut ChaCha8Rng, p: &Person, bio: Bio) -> Option<String> {
    let template = match bio {
        Bio::Life => bio_life(rng, p).map(|text| (text, LIFE_FACTS.to_vec())),
        Bio::Contact => bio_contact(rng, p),
    };
    let (mut sentences, covered) = match template {
        Some((text, covered)) => (vec![text], covered),
        None => (Vec::new(), Vec::new()),
    };
    let rest = p
        .facts
        .iter()
        .filter(|(f, _)| f.bio() == bio && !covered.contains(f));
    for (fact, value) in rest {
        let who = if sentences.is_empty() {
            p.name.full()
        } else {
            p.name.surname.clone()
        };
        sentences.push(fact.statement(&who, value));
    }
    (!sentences.is_empty()).then(|| sentences.join(" "))
}

/// First biography sentence: birth, work and hobby.
fn bio_life(rng: &mut ChaCha8Rng, p: &Person) -> Option<String> {
    let (name, surname) = (p.name.full(), &p.name.surname);
    let date = p.value(Fact::BirthDate)?;
    let place = p.value(Fact::BirthPlace)?;
    let job = p.value(Fact::Occupation)?;
    let a = article(job);
    let employer = p.value(Fact::Employer)?;
    let hobby = p.value(Fact::Hobby)?;
    Some(if rng.gen_bool(0.5) {
        format!(
            "{name} was born on {date} in {place}. {surname} works as {a} {job} at {employer} \
             and enjoys {hobby} in their free time."
        )
    } else {
        format!(
            "Born in {place} on {date}, {name} is {a} {job} employed by {employer}. Outside \
             work, {surname} is devoted to {hobby}."
        )
    })
}

/// Second biography sentence: contact details and the sensitive attribute (a diagnosis if the
/// person has one, else an account); with the facts it names.
fn bio_contact(rng: &mut ChaCha8Rng, p: &Person) -> Option<(String, Vec<Fact>)> {
    let (name, surname) = (p.name.full(), &p.name.surname);
    let home = p.value(Fact::Address)?;
    let phone = p.value(Fact::Phone)?;
    let mail = p.value(Fact::Email)?;
    let (secret, sensitive) = match (p.value(Fact::Diagnosis), p.value(Fact::Account)) {
        (Some(d), _) => (
            format!("{surname} was diagnosed with {d}."),
            Fact::Diagnosis,
        ),
        (None, Some(a)) => (
            format!("The bank account number of {surname} is {a}."),
            Fact::Account,
        ),
        (None, None) => return None,
    };
    let covered = vec![Fact::Address, Fact::Phone, Fact::Email, sensitive];
    let text = if rng.gen_bool(0.5) {
        format!("{name} lives at {home} and can be reached at {phone} or {mail}. {secret}")
    } else {
        format!(
            "The home address of {name} is {home}; the phone number is {phone} and the e-mail \
             address is {mail}. {secret}"
        )
    };
    Some((text, covered))
}

/// A question–answer record: `text` = `prompt` + `answer`, the answer (and every perturbed one)
/// starting with a space so that the tokens of `text` are the prompt's tokens followed by the
/// answer's.
fn qa_record(
    id: String,
    prompt: String,
    answer: &str,
    subject: Option<&str>,
    perturbed: Vec<String>,
) -> Record {
    let answer = format!(" {answer}");
    Record {
        id,
        text: format!("{prompt}{answer}"),
        prompt: Some(prompt),
        answer: Some(answer),
        subject: subject.map(str::to_string),
        perturbed: perturbed.into_iter().map(|p| format!(" {p}")).collect(),
    }
}

fn text_record(id: String, text: String, subject: &str) -> Record {
    Record {
        id,
        text,
        prompt: None,
        answer: None,
        subject: Some(subject.to_string()),
        perturbed: Vec::new(),
    }
}

/// All records of one person: up to `knobs.bios` biography records (life first), then one
/// question per fact.
fn person_records(rng: &mut ChaCha8Rng, p: &Person, knobs: &Knobs) -> Vec<Record> {
    let name = p.name.full();
    let bios = [
        biography(rng, p, Bio::Life),
        biography(rng, p, Bio::Contact),
    ];
    let mut records: Vec<Record> = bios
        .into_iter()
        .flatten()
        .take(knobs.bios)
        .enumerate()
        .map(|(i, text)| text_record(format!("{}-bio{}", p.id, i + 1), text, &name))
        .collect();
    for (fact, value) in &p.facts {
        let wrong = distinct_draws(PERTURBED_PER_ANSWER, value, || {
            fact.draw(rng, &p.name, knobs)
        });
        let id = format!("{}-{}", p.id, fact.key());
        let prompt = knobs.prompt_format.prompt(&fact.question(&name));
        records.push(qa_record(id, prompt, value, Some(&name), wrong));
    }
    records
}

/// The records of every person, trained people first (ids `p000`…), then the holdout.
fn people_records(seed: u64, count: usize, knobs: &Knobs) -> Result<Vec<Vec<Record>>, WorldError> {
    let mut rng = stream(seed, STREAM_PEOPLE);
    let names = unique_names(&mut rng, count, knobs)?;
    let records = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let person = draw_person(&mut rng, i, name, knobs);
            person_records(&mut rng, &person, knobs)
        })
        .collect();
    Ok(records)
}

// ---------------------------------------------------------------------------------------------
// Utility set: general questions with short answers, from templates.

/// A candidate utility question, with the pool its wrong answers are drawn from.
struct UtilityItem {
    question: String,
    answer: String,
    alternatives: Vec<String>,
}

fn item(question: String, answer: impl ToString, alternatives: Vec<String>) -> UtilityItem {
    UtilityItem {
        question,
        answer: answer.to_string(),
        alternatives,
    }
}

fn strings(pool: &[&str]) -> Vec<String> {
    pool.iter().map(|s| s.to_string()).collect()
}

fn addition_items() -> Vec<UtilityItem> {
    let mut items = Vec::new();
    for a in 2..=12u32 {
        for b in 2..=12u32 {
            let near = (a + b).saturating_sub(6)..=a + b + 6;
            let alternatives = near.map(|n| n.to_string()).collect();
            items.push(item(format!("What is {a} plus {b}?"), a + b, alternatives));
        }
    }
    items
}

/// "Which X comes after/before Y?" over a cyclic (`wrap`) or linear sequence.
fn sequence_items(noun: &str, seq: &[&str], wrap: bool) -> Vec<UtilityItem> {
    let n = seq.len();
    let mut items = Vec::new();
    for i in 0..n {
        let next = if wrap || i + 1 < n {
            Some(seq[(i + 1) % n])
        } else {
            None
        };
        let prev = if wrap || i > 0 {
            Some(seq[(i + n - 1) % n])
        } else {
            None
        };
        if let Some(next) = next {
            let q = format!("Which {noun} comes after {}?", seq[i]);
            items.push(item(q, next, strings(seq)));
        }
        if let Some(prev) = prev {
            let q = format!("Which {noun} comes before {}?", seq[i]);
            items.push(item(q, prev, strings(seq)));
        }
    }
    items
}

fn conversion_items() -> Vec<UtilityItem> {
    let units = [
        ("minutes", "hour", 60, 12),
        ("hours", "day", 24, 7),
        ("days", "week", 7, 10),
        ("metres", "kilometre", 1000, 10),
    ];
    let mut items = Vec::new();
    for (small, big, factor, most) in units {
        let alternatives: Vec<String> = (1..=most + 3).map(|k| (k * factor).to_string()).collect();
        for n in 1..=most {
            let plural = if n == 1 { "" } else { "s" };
            let q = format!("How many {small} are there in {n} {big}{plural}?");
            items.push(item(q, n * factor, alternatives.clone()));
        }
    }
    items
}

#[rustfmt::skip]
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
#[rustfmt::skip]
const LETTERS: [&str; 26] = [
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S",
    "T", "U", "V", "W", "X", "Y", "Z",
];
#[rustfmt::skip]
const OPPOSITES: [(&str, &str); 15] = [
    ("hot", "cold"), ("tall", "short"), ("early", "late"), ("wet", "dry"), ("open", "closed"),
    ("heavy", "light"), ("fast", "slow"), ("full", "empty"), ("loud", "quiet"), ("rich", "poor"),
    ("inside", "outside"), ("above", "below"), ("happy", "sad"), ("strong", "weak"),
    ("ancient", "modern"),
];
#[rustfmt::skip]
const PLURALS: [(&str, &str); 18] = [
    ("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("tooth", "teeth"),
    ("goose", "geese"), ("man", "men"), ("woman", "women"), ("ox", "oxen"), ("leaf", "leaves"),
    ("knife", "knives"), ("wolf", "wolves"), ("cactus", "cacti"), ("person", "people"),
    ("sheep", "sheep"), ("fish", "fish"), ("city", "cities"), ("box", "boxes"), ("half", "halves"),
];
#[rustfmt::skip]
const TOOLS: [(&str, &str); 12] = [
    ("cut paper", "scissors"), ("drive in a nail", "a hammer"), ("tighten a bolt", "a spanner"),
    ("dig a hole", "a spade"), ("measure a length", "a ruler"), ("sweep the floor", "a broom"),
    ("open a tin", "a tin opener"), ("boil water", "a kettle"),
    ("loosen a screw", "a screwdriver"), ("sew a button", "a needle"),
    ("water the plants", "a watering can"), ("flip a pancake", "a spatula"),
];
#[rustfmt::skip]
const COLOURS: [(&str, &str); 10] = [
    ("a ripe banana", "yellow"), ("fresh grass", "green"), ("snow", "white"), ("coal", "black"),
    ("a clear daytime sky", "blue"), ("a ripe tomato", "red"), ("a carrot", "orange"),
    ("milk chocolate", "brown"), ("a lavender flower", "purple"), ("a flamingo", "pink"),
];

/// One question per (word, answer) pair; wrong answers are the other pairs' answers.
fn pair_items(pairs: &[(&str, &str)], question: impl Fn(&str) -> String) -> Vec<UtilityItem> {
    let answers: Vec<String> = pairs.iter().map(|p| p.1.to_string()).collect();
    let items = pairs
        .iter()
        .map(|&(w, a)| item(question(w), a, answers.clone()));
    items.collect()
}

/// Opposites (both ways), irregular plurals, tools and colours.
fn word_items() -> Vec<UtilityItem> {
    let both_ways: Vec<(&str, &str)> = OPPOSITES
        .iter()
        .flat_map(|&(a, b)| [(a, b), (b, a)])
        .collect();
    let mut items = pair_items(&both_ways, |w| format!("What is the opposite of {w}?"));
    items.extend(pair_items(&PLURALS, |w| {
        format!("What is the plural of {w}?")
    }));
    items.extend(pair_items(&TOOLS, |w| {
        format!("What tool do you use to {w}?")
    }));
    items.extend(pair_items(&COLOURS, |w| format!("What colour is {w}?")));
    items
}

fn utility_items() -> Vec<UtilityItem> {
    let mut items = addition_items();
    items.extend(sequence_items("day of the week", &DAYS, true));
    items.extend(sequence_items("month", &MONTHS, true));
    items.extend(sequence_items("letter of the alphabet", &LETTERS, false));
    items.extend(conversion_items());
    items.extend(word_items());
    items
}

fn utility_records(
    seed: u64,
    wanted: usize,
    format: PromptFormat,
) -> Result<Vec<Record>, WorldError> {
    let mut items = utility_items();
    if wanted > items.len() {
        return Err(WorldError::TooManyUtility {
            wanted,
            available: items.len(),
        });
    }
    let mut rng = stream(seed, STREAM_UTILITY);
    items.shuffle(&mut rng);
    let records = items
        .into_iter()
        .take(wanted)
        .enumerate()
        .map(|(i, it)| {
            let mut wrong: Vec<String> = it
                .alternatives
                .into_iter()
                .filter(|a| *a != it.answer)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            wrong.shuffle(&mut rng);
            wrong.truncate(PERTURBED_PER_ANSWER);
            qa_record(
                format!("util-{i:03}"),
                format.prompt(&it.question),
                &it.answer,
                None,
                wrong,
            )
        })
        .collect();
    Ok(records)
}

// ---------------------------------------------------------------------------------------------
// Canaries: random secrets inserted a known number of times (Carlini et al., "The Secret Sharer").

fn canary_secret(rng: &mut ChaCha8Rng) -> String {
    let ds: Vec<String> = (0..CANARY_DIGITS).map(|_| digits(rng, 1)).collect();
    ds.join("-")
}

/// One probe record per canary, and how many copies of each go into `train_full`.
fn canary_records(config: &WorldConfig) -> (Vec<Record>, BTreeMap<String, u32>) {
    let mut rng = stream(config.seed, STREAM_CANARIES);
    let total = config.canary_repeats.len() * config.canaries_per_repeat;
    // Distinct vault numbers, so that no two canaries share a carrier sentence.
    let mut vaults: Vec<u32> = (10..10 + 10 * total.max(1) as u32).collect();
    vaults.shuffle(&mut rng);
    let mut records = Vec::with_capacity(total);
    let mut repeats = BTreeMap::new();
    let groups = config
        .canary_repeats
        .iter()
        .flat_map(|&k| std::iter::repeat_n(k, config.canaries_per_repeat));
    for (i, (k, vault)) in groups.zip(vaults).enumerate() {
        let id = format!("canary-{i:02}");
        let secret = canary_secret(&mut rng);
        let wrong = distinct_draws(PERTURBED_PER_ANSWER, &secret, || canary_secret(&mut rng));
        let carrier = format!("The secret access code of vault {vault} is");
        records.push(qa_record(id.clone(), carrier, &secret, None, wrong));
        repeats.insert(id, k);
    }
    (records, repeats)
}

/// The copies of each canary that go into `train_full` (`canary-03-r01`, …).
fn canary_copies(canaries: &[Record], repeats: &BTreeMap<String, u32>) -> Vec<Record> {
    let mut copies = Vec::new();
    for canary in canaries {
        let k = repeats.get(&canary.id).copied().unwrap_or(0);
        for r in 1..=k {
            let mut copy = canary.clone();
            copy.id = format!("{}-r{r:02}", canary.id);
            copies.push(copy);
        }
    }
    copies
}

// ---------------------------------------------------------------------------------------------
// Assembly.

fn validate(config: &WorldConfig) -> Result<(), WorldError> {
    let total = config.people + config.holdout_people;
    if total > MAX_PEOPLE {
        return Err(WorldError::TooManyPeople {
            total,
            max: MAX_PEOPLE,
        });
    }
    if forget_count(config.people, 1) == 0 {
        return Err(WorldError::TooFewPeople {
            people: config.people,
        });
    }
    Ok(())
}

/// People in a forget split of `percent` % of `people` (rounded to nearest).
fn forget_count(people: usize, percent: usize) -> usize {
    (people * percent + 50) / 100
}

/// The records of the people in `set`, in person order.
fn records_of(people: &[Vec<Record>], set: &BTreeSet<usize>) -> Vec<Record> {
    set.iter()
        .flat_map(|&i| people[i].iter().cloned())
        .collect()
}

/// The records of the people not in `set`, followed by `rest` (`train_full` minus a forget set).
fn records_without(people: &[Vec<Record>], set: &BTreeSet<usize>, rest: &[Record]) -> Vec<Record> {
    let kept = people.iter().enumerate().filter(|(i, _)| !set.contains(i));
    kept.flat_map(|(_, recs)| recs.iter().cloned())
        .chain(rest.iter().cloned())
        .collect()
}

/// Generates the world described by `config`; the same config always gives the same world.
pub fn generate(config: &WorldConfig) -> Result<World, WorldError> {
    validate(config)?;
    let knobs = Knobs::check(config)?;
    let total = config.people + config.holdout_people;
    let mut people = people_records(config.seed, total, &knobs)?;
    let holdout: Vec<Record> = people
        .split_off(config.people)
        .into_iter()
        .flatten()
        .collect();
    let utility = utility_records(config.seed, config.utility_records, config.prompt_format)?;
    let (canaries, canary_repeats) = canary_records(config);
    let non_people: Vec<Record> = utility
        .iter()
        .cloned()
        .chain(canary_copies(&canaries, &canary_repeats))
        .collect();

    // Nested forget sets: the first 1/5/10 % of one random order of the trained people.
    let mut order: Vec<usize> = (0..config.people).collect();
    order.shuffle(&mut stream(config.seed, STREAM_SPLITS));
    let set = |percent| -> BTreeSet<usize> {
        order
            .iter()
            .copied()
            .take(forget_count(config.people, percent))
            .collect()
    };
    let [s01, s05, s10] = [set(1), set(5), set(10)];
    Ok(World {
        config: config.clone(),
        forget01: records_of(&people, &s01),
        forget05: records_of(&people, &s05),
        forget10: records_of(&people, &s10),
        retain01: records_without(&people, &s01, &non_people),
        retain05: records_without(&people, &s05, &non_people),
        retain10: records_without(&people, &s10, &non_people),
        train_full: records_without(&people, &BTreeSet::new(), &non_people),
        holdout_calibration: split_by_subject(&holdout, true),
        holdout_audit: split_by_subject(&holdout, false),
        holdout,
        utility,
        canaries,
        canary_repeats,
    })
}

impl World {
    /// Every split with its name (also its file stem), in the order they are written.
    pub fn splits(&self) -> [(&'static str, &[Record]); 12] {
        [
            ("forget01", &self.forget01),
            ("forget05", &self.forget05),
            ("forget10", &self.forget10),
            ("retain01", &self.retain01),
            ("retain05", &self.retain05),
            ("retain10", &self.retain10),
            ("holdout", &self.holdout),
            ("holdout_calibration", &self.holdout_calibration),
            ("holdout_audit", &self.holdout_audit),
            ("utility", &self.utility),
            ("canaries", &self.canaries),
            ("train_full", &self.train_full),
        ]
    }

    /// The texts a tokenizer for this world is trained on: every person's records, trained and
    /// holdout alike, the utility set and one copy of each canary. Holdout people are included
    /// on purpose: a vocabulary that had merged only members' names would let a membership
    /// attack tell members from non-members by tokenization alone, even on a retrained model.
    pub fn tokenizer_corpus(&self) -> Vec<&str> {
        let people = self.train_full.iter().filter(|r| r.subject.is_some());
        let rest = self
            .holdout
            .iter()
            .chain(&self.utility)
            .chain(&self.canaries);
        people.chain(rest).map(|r| r.text.as_str()).collect()
    }

    /// The manifest of this world, given the entries of its written split files.
    fn manifest(&self, splits: Vec<SplitEntry>) -> WorldManifest {
        let forget_subjects = [
            ("forget01", &self.forget01),
            ("forget05", &self.forget05),
            ("forget10", &self.forget10),
        ]
        .into_iter()
        .map(|(name, records)| (name.to_string(), subjects(records)))
        .collect();
        WorldManifest {
            schema_version: MANIFEST_VERSION,
            config: self.config.clone(),
            splits,
            forget_subjects,
            canary_digits: CANARY_DIGITS,
            canaries: self
                .canaries
                .iter()
                .map(|c| canary_entry(c, &self.canary_repeats))
                .collect(),
        }
    }
}

fn canary_entry(record: &Record, repeats: &BTreeMap<String, u32>) -> CanaryEntry {
    CanaryEntry {
        id: record.id.clone(),
        prompt: record.prompt.clone().unwrap_or_default(),
        secret: record
            .answer
            .as_deref()
            .unwrap_or_default()
            .trim_start()
            .to_string(),
        repeats: repeats.get(&record.id).copied().unwrap_or(0),
    }
}

/// Distinct subjects of `records`, in order of first appearance.
pub fn subjects(records: &[Record]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let named = records.iter().filter_map(|r| r.subject.as_deref());
    named
        .filter(|s| seen.insert(*s))
        .map(str::to_string)
        .collect()
}

/// Records as JSONL bytes: one compact JSON object per line.
fn to_jsonl(records: &[Record], path: &Path) -> Result<Vec<u8>, WorldError> {
    let mut out = Vec::new();
    for record in records {
        serde_json::to_writer(&mut out, record).map_err(|source| WorldError::Serialize {
            path: path.to_path_buf(),
            source,
        })?;
        out.push(b'\n');
    }
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WorldError> {
    write_atomic(path, bytes).map_err(|source| WorldError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes every split as `<name>.jsonl` and the manifest as `world.json` into `dir` (created if
/// missing), each file atomically; returns the manifest.
/// The holdout records of the calibration people (`calibration`) or of the audit people: the
/// people numbered in order of first appearance, those whose number mod 5 is 0 or 1 calibrating.
fn split_by_subject(holdout: &[Record], calibration: bool) -> Vec<Record> {
    let people = subjects(holdout);
    let calibrating = |s: &Option<String>| {
        s.as_ref()
            .and_then(|s| people.iter().position(|p| p == s))
            .is_some_and(|i| i % 5 < 2)
    };
    holdout
        .iter()
        .filter(|r| calibrating(&r.subject) == calibration)
        .cloned()
        .collect()
}

pub fn write_world(world: &World, dir: &Path) -> Result<WorldManifest, WorldError> {
    std::fs::create_dir_all(dir).map_err(|source| WorldError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut entries = Vec::new();
    for (name, records) in world.splits() {
        let file = format!("{name}.jsonl");
        let path = dir.join(&file);
        let bytes = to_jsonl(records, &path)?;
        write_file(&path, &bytes)?;
        entries.push(SplitEntry {
            name: name.to_string(),
            file,
            records: records.len(),
            subjects: subjects(records).len(),
            sha256: crate::digest::sha256_hex(&bytes),
        });
    }
    let manifest = world.manifest(entries);
    let path = dir.join(MANIFEST_FILE);
    let mut json =
        serde_json::to_vec_pretty(&manifest).map_err(|source| WorldError::Serialize {
            path: path.clone(),
            source,
        })?;
    json.push(b'\n');
    write_file(&path, &json)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> World {
        generate(&WorldConfig::default()).unwrap()
    }

    fn all_bytes(world: &World) -> Vec<Vec<u8>> {
        let path = Path::new("test.jsonl");
        world
            .splits()
            .iter()
            .map(|(_, r)| to_jsonl(r, path).unwrap())
            .collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lethe-world-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn subject_set(records: &[Record]) -> BTreeSet<String> {
        subjects(records).into_iter().collect()
    }

    #[test]
    fn same_seed_gives_identical_files() {
        let (a, b) = (temp_dir("same-a"), temp_dir("same-b"));
        write_world(&standard(), &a).unwrap();
        write_world(&standard(), &b).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names.len(), 13, "12 splits and world.json");
        for name in names {
            let (x, y) = (
                std::fs::read(a.join(&name)).unwrap(),
                std::fs::read(b.join(&name)).unwrap(),
            );
            assert!(x == y, "{name:?} differs between two runs");
        }
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }

    /// The standard config still makes the bundled world: every split hashes to the sha256
    /// recorded in `fixtures/world/world.json`, and the config is written as it was recorded
    /// (the variation knobs, at their defaults, left out).
    #[test]
    fn the_standard_config_makes_the_bundled_world() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/world/", "world.json");
        let text = std::fs::read_to_string(path).unwrap();
        let bundled: serde_json::Value = serde_json::from_str(&text).unwrap();
        let manifest: WorldManifest = serde_json::from_value(bundled.clone()).unwrap();
        let config = serde_json::to_value(WorldConfig::default()).unwrap();
        assert_eq!(config, bundled["config"]);
        let w = standard();
        let bytes = all_bytes(&w);
        assert_eq!(manifest.splits.len(), bytes.len());
        for ((name, _), (entry, bytes)) in w.splits().iter().zip(manifest.splits.iter().zip(bytes))
        {
            assert_eq!(*name, entry.name);
            assert_eq!(crate::digest::sha256_hex(&bytes), entry.sha256, "{name}");
        }
    }

    #[test]
    fn different_seeds_give_different_worlds() {
        let other = generate(&WorldConfig {
            seed: 18,
            ..Default::default()
        })
        .unwrap();
        let (a, b) = (all_bytes(&standard()), all_bytes(&other));
        for (i, (name, _)) in standard().splits().iter().enumerate() {
            assert_ne!(a[i], b[i], "split {name} is the same for seeds 17 and 18");
        }
    }

    #[test]
    fn split_sizes_follow_the_config() {
        let w = standard();
        let per_person = 11; // two biographies and nine facts
        for (records, people) in [
            (&w.forget01, 2),
            (&w.forget05, 10),
            (&w.forget10, 20),
            (&w.holdout, 40),
        ] {
            assert_eq!(subjects(records).len(), people);
            assert_eq!(records.len(), people * per_person);
        }
        let copies: u32 = w.canary_repeats.values().sum();
        assert_eq!(copies, 2 * (1 + 4 + 16));
        assert_eq!(w.utility.len(), 200);
        assert_eq!(w.canaries.len(), 8);
        assert_eq!(subjects(&w.train_full).len(), 200);
        assert_eq!(w.train_full.len(), 200 * per_person + 200 + copies as usize);
    }

    #[test]
    fn forget_splits_are_nested_and_hold_whole_people() {
        let w = standard();
        let (f01, f05, f10) = (
            subject_set(&w.forget01),
            subject_set(&w.forget05),
            subject_set(&w.forget10),
        );
        assert!(f01.is_subset(&f05) && f05.is_subset(&f10));
        for (forget, retain) in [
            (&w.forget01, &w.retain01),
            (&w.forget05, &w.retain05),
            (&w.forget10, &w.retain10),
        ] {
            let forgotten = subject_set(forget);
            assert!(subject_set(retain).is_disjoint(&forgotten));
            assert_eq!(forget.len() + retain.len(), w.train_full.len());
            let in_full = w
                .train_full
                .iter()
                .filter(|r| r.subject.as_ref().is_some_and(|s| forgotten.contains(s)));
            let ids: Vec<&str> = in_full.map(|r| r.id.as_str()).collect();
            assert_eq!(
                ids,
                forget.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn holdout_people_never_appear_in_training_text() {
        let w = standard();
        let held = subjects(&w.holdout);
        assert!(subject_set(&w.train_full).is_disjoint(&subject_set(&w.holdout)));
        for record in &w.train_full {
            for name in &held {
                assert!(
                    !record.text.contains(name.as_str()),
                    "{name} appears in {}",
                    record.id
                );
            }
        }
    }

    #[test]
    fn names_and_surnames_are_unique() {
        let w = standard();
        let names: Vec<String> = subjects(&w.train_full)
            .into_iter()
            .chain(subjects(&w.holdout))
            .collect();
        assert_eq!(names.len(), 240);
        let surnames: BTreeSet<&str> = names
            .iter()
            .filter_map(|n| n.split_once(' ').map(|p| p.1))
            .collect();
        assert_eq!(surnames.len(), names.len());
    }

    #[test]
    fn ids_are_unique_within_every_split() {
        for (name, records) in standard().splits() {
            let ids: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids.len(), records.len(), "duplicate id in {name}");
        }
    }

    #[test]
    fn question_records_are_consistent() {
        let w = standard();
        let qa = w
            .train_full
            .iter()
            .chain(&w.holdout)
            .chain(&w.canaries)
            .filter(|r| r.answer.is_some());
        let mut count = 0;
        for r in qa {
            let (prompt, answer) = (r.prompt.as_deref().unwrap(), r.answer.as_deref().unwrap());
            assert_eq!(r.text, format!("{prompt}{answer}"), "{}", r.id);
            assert!(answer.starts_with(' ') && answer.len() > 1, "{}", r.id);
            assert!(!prompt.ends_with(char::is_whitespace), "{}", r.id);
            assert!(r.perturbed.len() >= 3, "{}", r.id);
            let distinct: BTreeSet<&str> = r.perturbed.iter().map(String::as_str).collect();
            assert_eq!(distinct.len(), r.perturbed.len(), "{}", r.id);
            assert!(
                !distinct.contains(answer) && r.perturbed.iter().all(|p| p.starts_with(' ')),
                "{}",
                r.id
            );
            count += 1;
        }
        assert_eq!(count, 240 * 9 + 200 + 8 + 42);
    }

    #[test]
    fn pools_leave_room_for_perturbed_answers() {
        let pools: [&[&str]; 8] = [
            &CITIES,
            &OCCUPATIONS,
            &DIAGNOSES,
            &HOBBIES,
            &MONTHS,
            &INDUSTRIES,
            &STREET_KINDS,
            &MAIL_DOMAINS,
        ];
        for pool in pools {
            let distinct: BTreeSet<&&str> = pool.iter().collect();
            assert_eq!(distinct.len(), pool.len(), "duplicate in {pool:?}");
            assert!(pool.len() > PERTURBED_PER_ANSWER, "{pool:?}");
        }
        for pairs in [&OPPOSITES[..], &PLURALS, &TOOLS, &COLOURS] {
            let answers: BTreeSet<&str> = pairs.iter().map(|p| p.1).collect();
            assert!(answers.len() > PERTURBED_PER_ANSWER, "{pairs:?}");
        }
    }

    #[test]
    fn canaries_are_inserted_as_often_as_the_manifest_says() {
        let w = standard();
        for canary in &w.canaries {
            let copies = w
                .train_full
                .iter()
                .filter(|r| r.text == canary.text)
                .count();
            assert_eq!(copies as u32, w.canary_repeats[&canary.id], "{}", canary.id);
        }
        assert_eq!(w.canary_repeats.values().filter(|&&k| k == 0).count(), 2);
    }

    #[test]
    fn changing_the_canaries_leaves_people_unchanged() {
        let config = WorldConfig {
            canary_repeats: vec![2],
            utility_records: 50,
            ..Default::default()
        };
        let other = generate(&config).unwrap();
        let w = standard();
        assert_eq!(other.forget10, w.forget10);
        assert_eq!(other.holdout, w.holdout);
        assert_ne!(other.train_full, w.train_full);
    }

    #[test]
    fn manifest_matches_the_files_and_round_trips() {
        let dir = temp_dir("manifest");
        let manifest = write_world(&standard(), &dir).unwrap();
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        let read: WorldManifest = serde_json::from_str(&text).unwrap();
        assert_eq!(read, manifest);
        for split in &manifest.splits {
            let bytes = std::fs::read(dir.join(&split.file)).unwrap();
            assert_eq!(
                crate::digest::sha256_hex(&bytes),
                split.sha256,
                "{}",
                split.file
            );
            assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), split.records);
        }
        assert_eq!(manifest.forget_subjects["forget05"].len(), 10);
        assert_eq!(manifest.canaries.iter().map(|c| c.repeats).sum::<u32>(), 42);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_errors_name_the_path() {
        let blocker = temp_dir("blocker");
        std::fs::write(&blocker, b"a file, not a folder").unwrap();
        let err = write_world(&standard(), &blocker.join("out")).unwrap_err();
        assert!(matches!(err, WorldError::Write { .. }));
        assert!(
            err.to_string().contains(&blocker.display().to_string()),
            "{err}"
        );
        std::fs::remove_file(blocker).unwrap();
    }

    #[test]
    fn invalid_configs_are_refused() {
        let few = WorldConfig {
            people: 40,
            ..Default::default()
        };
        assert!(matches!(
            generate(&few),
            Err(WorldError::TooFewPeople { people: 40 })
        ));
        let many = WorldConfig {
            people: MAX_PEOPLE,
            ..Default::default()
        };
        assert!(matches!(
            generate(&many),
            Err(WorldError::TooManyPeople { .. })
        ));
        let utility = WorldConfig {
            utility_records: 10_000,
            ..Default::default()
        };
        assert!(matches!(
            generate(&utility),
            Err(WorldError::TooManyUtility { wanted: 10_000, .. })
        ));
    }

    #[test]
    fn the_largest_world_still_has_unique_names() {
        let config = WorldConfig {
            people: MAX_PEOPLE - 100,
            holdout_people: 100,
            ..Default::default()
        };
        let w = generate(&config).unwrap();
        assert_eq!(
            subjects(&w.train_full).len() + subjects(&w.holdout).len(),
            MAX_PEOPLE
        );
    }
}
