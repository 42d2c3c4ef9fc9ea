//! The synthetic load: who calls which center, about what and where, and
//! what happens to each ticket afterwards.
//!
//! Parameters live in `simulator/data/workload.toml`, every default citing
//! its source (the seed articles and `../shared/research/12345-domain.md`).
//! [`Workload::arrivals`] turns them into a lazy, time-ordered stream of
//! [`Arrival`]s for a topology.
//!
//! Volume model: each city has a daily volume (its figure in
//! `city_tickets_per_day`, or an even per-district share of what is left of
//! the national `tickets_per_day`), spread evenly over its districts in the
//! whole country. Only districts with a group in the topology take calls, so
//! a city run gets that city's real volume and a national run gets
//! `tickets_per_day` in all.
//!
//! Determinism: one `StdRng` per simulated hour, seeded from (seed, hour),
//! drives everything generated in that hour; containers are ordered; the
//! only floating-point operations are IEEE basic ones and `sqrt` (correctly
//! rounded everywhere) — `exp` and `ln` of the platform's libm are avoided,
//! so the stream is the same on every machine.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use hotline_federation::topology::Topology;
use hotline_federation::{Level, regions};
use hotline_node::core::categories::CategoryTree;
use hotline_node::core::deadlines::{DeadlineRules, KINDS, Span};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::model::{Arrival, Fate, Handling, SimMs};

const HOUR_MS: SimMs = 3_600_000;
const MINUTE_MS: f64 = 60_000.0;
/// A mass incident's callers arrive within this long of its start.
const INCIDENT_SPREAD_MS: SimMs = 3 * HOUR_MS;
/// A direct answer takes 1–10 minutes (seed 000: "2分钟内完成问题分类";
/// research §3.2: Changzhou's average talk time 150 s).
const ANSWER_MS: (SimMs, SimMs) = (60_000, 600_000);
/// The reply delay is scaled so that its maximum is this share of the
/// ticket's handling deadline.
const DEADLINE_SHARE: f64 = 0.8;
/// Upper bounds that keep a parsed workload sane.
const MAX_TICKETS_PER_DAY: u64 = 1_000_000_000;
const MAX_DELAY_MIN: u32 = 90 * 24 * 60;
const MAX_SURGE_PERCENT: u32 = 1_000;
const MAX_INCIDENT_SIZE: u32 = 10_000;
const MAX_INCIDENTS_PER_DAY: u32 = 1_000_000;
const PRIORITY_NAMES: [&str; 3] = ["normal", "urgent", "emergency"];
const SATISFACTION_NAMES: [&str; 3] = ["satisfied", "basic", "unsatisfied"];

/// Parameters of the synthetic load. Every default cites its source in
/// `simulator/data/workload.toml`. Shares are per mille (‰).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// National items per day; a smaller topology gets its cities' share.
    pub tickets_per_day: u64,
    /// ‰ per kind (consult | help | complaint | report | suggestion | praise).
    pub kind_mix: Vec<(String, u32)>,
    /// ‰ per category path of the built-in tree.
    pub category_mix: Vec<(String, u32)>,
    /// ‰ of all items answered at intake (直办). Emergency, urgent and
    /// mass-incident items are always dispatched; consults are answered
    /// first, other kinds only if consults alone cannot reach the figure.
    pub direct_answer_permille: u32,
    /// ‰ of items about a district other than the caller's.
    pub other_region_permille: u32,
    /// ‰ of those about a district in another province.
    pub cross_province_share_of_other_permille: u32,
    /// Relative weight per CST hour (00–23).
    pub diurnal: [u32; 24],
    /// Extra volume when `holiday` is set, percent.
    pub surge_percent: u32,
    pub holiday: bool,
    /// Mass incidents per day nationally (scaled by the topology's share of
    /// volume).
    pub mass_incident_per_day: u32,
    /// Callers per incident, uniform in [min, max].
    pub mass_incident_size: (u32, u32),
    /// ‰ of dispatched tickets returned once (退单).
    pub return_permille: u32,
    /// ‰ of tickets transferred to another region that the destination
    /// sends back to the first-contact center (退回首接), which reviews
    /// them and handles them itself.
    pub send_back_permille: u32,
    /// ‰ of returns (退单) whose ground is 属地不符 with the place in
    /// another region: the center transfers the ticket there from its
    /// review instead of dispatching it to another unit.
    pub return_elsewhere_permille: u32,
    /// ‰ of dispatched tickets extended once (延期).
    pub extension_permille: u32,
    /// ‰ of dispatched tickets reopened after an unsatisfied callback (重办).
    pub reopen_permille: u32,
    /// satisfied / basic / unsatisfied ‰ of the final callback.
    pub satisfaction_mix: [u32; 3],
    /// ‰ of all items (drawn among non-consult kinds).
    pub emergency_permille: u32,
    pub urgent_permille: u32,
    /// Items per day of cities with a figure (4-digit codes).
    pub city_tickets_per_day: Vec<(String, u64)>,
    /// Lifecycle delays in minutes, (median, max), each from the previous
    /// step. The reply delay (and, for emergency and urgent tickets, the
    /// dispatch and sign delays) is scaled down so its maximum is 80 % of
    /// the ticket's handling deadline (`DeadlineRules::builtin`).
    pub dispatch_min: (u32, u32),
    pub sign_min: (u32, u32),
    pub reply_min: (u32, u32),
    pub callback_min: (u32, u32),
}

thread_local! {
    /// Set while the built-in file is being parsed: serde's container
    /// `default` asks for `Default::default()` first, which must not recurse.
    static PARSING_BUILTIN: Cell<bool> = const { Cell::new(false) };
}

impl Default for Workload {
    /// The values of `simulator/data/workload.toml`.
    fn default() -> Self {
        if PARSING_BUILTIN.with(Cell::get) {
            return Workload::blank();
        }
        Workload::builtin().clone()
    }
}

impl Workload {
    pub const BUILTIN_TOML: &'static str = include_str!("../data/workload.toml");

    fn builtin() -> &'static Workload {
        static BUILTIN: OnceLock<Workload> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            PARSING_BUILTIN.with(|f| f.set(true));
            let w = Workload::parse(Self::BUILTIN_TOML);
            PARSING_BUILTIN.with(|f| f.set(false));
            w.unwrap_or_else(|e| panic!("builtin workload.toml is invalid: {e}"))
        })
    }

    /// Every field zero or empty: the base the built-in file is read onto
    /// (it sets every key; a test checks).
    fn blank() -> Workload {
        Workload {
            tickets_per_day: 0,
            kind_mix: Vec::new(),
            category_mix: Vec::new(),
            direct_answer_permille: 0,
            other_region_permille: 0,
            cross_province_share_of_other_permille: 0,
            diurnal: [0; 24],
            surge_percent: 0,
            holiday: false,
            mass_incident_per_day: 0,
            mass_incident_size: (0, 0),
            return_permille: 0,
            send_back_permille: 0,
            return_elsewhere_permille: 0,
            extension_permille: 0,
            reopen_permille: 0,
            satisfaction_mix: [0; 3],
            emergency_permille: 0,
            urgent_permille: 0,
            city_tickets_per_day: Vec::new(),
            dispatch_min: (0, 0),
            sign_min: (0, 0),
            reply_min: (0, 0),
            callback_min: (0, 0),
        }
    }

    /// Parses and validates a workload file; keys it leaves out keep the
    /// built-in values. Rejected, naming the field: unknown keys, mixes that
    /// do not sum to 1000 ‰, unknown or repeated kinds, categories or cities,
    /// shares over 1000 ‰, priorities or direct answers that cannot be met
    /// (see the field docs), an all-zero diurnal curve, and delays or sizes
    /// out of range.
    pub fn parse(text: &str) -> Result<Workload, String> {
        let w: Workload = toml::from_str(text).map_err(|e| format!("workload: {e}"))?;
        w.validate()?;
        Ok(w)
    }

    /// Reads and parses a workload file.
    pub fn load(path: &Path) -> Result<Workload, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Workload::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn validate(&self) -> Result<(), String> {
        let err = |m: String| Err(format!("workload: {m}"));
        if self.tickets_per_day > MAX_TICKETS_PER_DAY {
            return err(format!(
                "tickets_per_day = {} is over {MAX_TICKETS_PER_DAY}",
                self.tickets_per_day
            ));
        }
        // Kinds.
        check_mix("kind_mix", &self.kind_mix)?;
        for (kind, _) in &self.kind_mix {
            if !KINDS.contains(&kind.as_str()) {
                return err(format!(
                    "kind_mix: unknown kind \"{kind}\"; valid: {}",
                    KINDS.join(", ")
                ));
            }
        }
        // Categories.
        check_mix("category_mix", &self.category_mix)?;
        let tree = CategoryTree::builtin();
        for (path, _) in &self.category_mix {
            tree.validate(path)
                .map_err(|e| format!("workload: category_mix: {e}"))?;
        }
        // Shares.
        for (name, v) in [
            ("direct_answer_permille", self.direct_answer_permille),
            ("other_region_permille", self.other_region_permille),
            (
                "cross_province_share_of_other_permille",
                self.cross_province_share_of_other_permille,
            ),
            ("return_permille", self.return_permille),
            ("send_back_permille", self.send_back_permille),
            ("return_elsewhere_permille", self.return_elsewhere_permille),
            ("extension_permille", self.extension_permille),
            ("reopen_permille", self.reopen_permille),
            ("emergency_permille", self.emergency_permille),
            ("urgent_permille", self.urgent_permille),
        ] {
            if v > 1000 {
                return err(format!("{name} = {v} is over 1000 ‰"));
            }
        }
        let sat_sum: u32 = self.satisfaction_mix.iter().sum();
        if sat_sum != 1000 {
            return err(format!(
                "satisfaction_mix sums to {sat_sum} ‰ ({:?}); it must sum to 1000",
                self.satisfaction_mix
            ));
        }
        // Priorities go to non-consult kinds, which are always dispatched
        // when not normal.
        let consult = self.consult_share();
        let prio = self.emergency_permille + self.urgent_permille;
        if prio > 1000 - consult {
            return err(format!(
                "emergency_permille + urgent_permille = {prio} ‰ is more than the non-consult kinds' \
                 {} ‰ (only non-consult items get a priority)",
                1000 - consult
            ));
        }
        if self.direct_answer_permille > 1000 - prio {
            return err(format!(
                "direct_answer_permille = {} cannot be met: {prio} ‰ are emergency or urgent and \
                 always dispatched",
                self.direct_answer_permille
            ));
        }
        // Diurnal curve and surge.
        if self.diurnal.iter().all(|&w| w == 0) {
            return err("diurnal: all 24 weights are zero".into());
        }
        if self.diurnal.iter().any(|&w| w > 1_000_000) {
            return err("diurnal: a weight is over 1000000".into());
        }
        if self.surge_percent > MAX_SURGE_PERCENT {
            return err(format!(
                "surge_percent = {} is over {MAX_SURGE_PERCENT}",
                self.surge_percent
            ));
        }
        // Mass incidents.
        if self.mass_incident_per_day > MAX_INCIDENTS_PER_DAY {
            return err(format!(
                "mass_incident_per_day = {} is over {MAX_INCIDENTS_PER_DAY}",
                self.mass_incident_per_day
            ));
        }
        let (lo, hi) = self.mass_incident_size;
        if lo == 0 || lo > hi || hi > MAX_INCIDENT_SIZE {
            return err(format!(
                "mass_incident_size = [{lo}, {hi}] must satisfy 1 <= min <= max <= {MAX_INCIDENT_SIZE}"
            ));
        }
        // Cities.
        let geo = geo();
        let mut seen = std::collections::BTreeSet::new();
        let mut known: u64 = 0;
        for (code, n) in &self.city_tickets_per_day {
            if !geo.districts_of_city.contains_key(code.as_str()) {
                return err(format!(
                    "city_tickets_per_day: \"{code}\" is not a city code (4 digits) with districts"
                ));
            }
            if !seen.insert(code.as_str()) {
                return err(format!(
                    "city_tickets_per_day: city \"{code}\" is listed twice"
                ));
            }
            if *n > MAX_TICKETS_PER_DAY {
                return err(format!(
                    "city_tickets_per_day: \"{code}\" = {n} is over {MAX_TICKETS_PER_DAY}"
                ));
            }
            known += n;
        }
        if known > self.tickets_per_day {
            return err(format!(
                "city_tickets_per_day sums to {known}, more than tickets_per_day = {} (the national \
                 total); raise tickets_per_day, or lower or empty city_tickets_per_day",
                self.tickets_per_day
            ));
        }
        // Delays.
        for (name, (median, max)) in [
            ("dispatch_min", self.dispatch_min),
            ("sign_min", self.sign_min),
            ("reply_min", self.reply_min),
            ("callback_min", self.callback_min),
        ] {
            if median == 0 || median > max || max > MAX_DELAY_MIN {
                return err(format!(
                    "{name} = [{median}, {max}] must satisfy 1 <= median <= max <= {MAX_DELAY_MIN} \
                     (minutes)"
                ));
            }
        }
        Ok(())
    }

    fn consult_share(&self) -> u32 {
        self.kind_mix
            .iter()
            .filter(|(k, _)| k == "consult")
            .map(|(_, w)| *w)
            .sum()
    }

    /// Calls per day for each district group of `topology` (before surge
    /// and incidents).
    pub fn district_volumes_of(&self, topology: &Topology) -> Vec<(&'static str, f64)> {
        self.district_volumes(topology).0
    }

    /// The daily volume of each district of the topology that takes calls
    /// (code order), and the national daily total.
    fn district_volumes(&self, topology: &Topology) -> (Vec<(&'static str, f64)>, f64) {
        let geo = geo();
        let mut known_sum: u64 = 0;
        let mut per_district_known: BTreeMap<&str, f64> = BTreeMap::new();
        for (code, n) in &self.city_tickets_per_day {
            if let Some(ds) = geo.districts_of_city.get(code.as_str())
                && !ds.is_empty()
                && !per_district_known.contains_key(code.as_str())
            {
                known_sum += n;
                per_district_known.insert(code.as_str(), *n as f64 / ds.len() as f64);
            }
        }
        let unknown_districts: usize = geo
            .districts_of_city
            .iter()
            .filter(|(c, _)| !per_district_known.contains_key(*c))
            .map(|(_, ds)| ds.len())
            .sum();
        let rest = self.tickets_per_day.saturating_sub(known_sum);
        let per_unknown = if unknown_districts == 0 {
            0.0
        } else {
            rest as f64 / unknown_districts as f64
        };
        let national = (known_sum + rest) as f64;
        let mut out: BTreeMap<&'static str, f64> = BTreeMap::new();
        for g in &topology.groups {
            if let Some((&code, &city)) = geo.city_of_district.get_key_value(g.region.as_str()) {
                let v = per_district_known.get(city).copied().unwrap_or(per_unknown);
                out.insert(code, v);
            }
        }
        (out.into_iter().collect(), national)
    }

    /// Σ over the run's hours of (diurnal share × covered part of the hour).
    fn day_fraction(&self, duration_ms: SimMs) -> f64 {
        let total: u64 = self.diurnal.iter().map(|&w| u64::from(w)).sum();
        let mut f = 0.0;
        let mut h: SimMs = 0;
        while h * HOUR_MS < duration_ms {
            let covered = (duration_ms - h * HOUR_MS).min(HOUR_MS) as f64 / HOUR_MS as f64;
            f += f64::from(self.diurnal[(h % 24) as usize]) / total as f64 * covered;
            h += 1;
        }
        f
    }

    fn surge(&self) -> f64 {
        if self.holiday {
            1.0 + f64::from(self.surge_percent) / 100.0
        } else {
            1.0
        }
    }

    /// Expected number of arrivals for this topology and duration (the
    /// mean of what [`Workload::arrivals`] yields, mass incidents included;
    /// incident callers past the end of the run are not counted out).
    pub fn expected(&self, topology: &Topology, duration_ms: SimMs) -> u64 {
        if duration_ms <= 0 {
            return 0;
        }
        let (districts, national) = self.district_volumes(topology);
        let per_day: f64 = districts.iter().map(|(_, v)| v).sum();
        let frac = self.day_fraction(duration_ms);
        let calls = per_day * frac * self.surge();
        let incidents = if national > 0.0 {
            f64::from(self.mass_incident_per_day) * per_day / national * frac
        } else {
            0.0
        };
        let (lo, hi) = self.mass_incident_size;
        let mean_size = f64::from(lo + hi) / 2.0;
        (calls + incidents * mean_size).round() as u64
    }

    /// A copy whose daily volume on `topology` (before surge and incidents)
    /// is `tickets_per_day`: the national total and every city figure are
    /// scaled by the same factor (mass incidents too), so the shape of the
    /// load is unchanged (`hotline sim run|swarm --tickets-per-day`).
    pub fn scaled_to(&self, topology: &Topology, tickets_per_day: u64) -> Workload {
        let (districts, _) = self.district_volumes(topology);
        let now: f64 = districts.iter().map(|(_, v)| v).sum();
        let mut w = self.clone();
        if now <= 0.0 {
            return w;
        }
        let f = tickets_per_day as f64 / now;
        w.tickets_per_day = (self.tickets_per_day as f64 * f).round() as u64;
        for (_, n) in &mut w.city_tickets_per_day {
            *n = (*n as f64 * f).round() as u64;
        }
        w.mass_incident_per_day = (f64::from(self.mass_incident_per_day) * f)
            .round()
            .min(f64::from(MAX_INCIDENTS_PER_DAY)) as u32;
        // Rounding must not push the known cities over the total.
        let known: u64 = w.city_tickets_per_day.iter().map(|(_, n)| n).sum();
        w.tickets_per_day = w.tickets_per_day.max(known);
        w
    }

    /// The arrivals of a run on `topology` lasting `duration_ms`, starting
    /// at 00:00 CST: lazy, hour by hour, in non-decreasing `at` order, all
    /// from `seed`. Districts (6-digit groups) of the topology take calls.
    pub fn arrivals(&self, topology: &Topology, duration_ms: SimMs, seed: u64) -> Arrivals {
        let plan = Plan::new(self, topology);
        let hours = if duration_ms <= 0 {
            0
        } else {
            (duration_ms + HOUR_MS - 1) / HOUR_MS
        };
        Arrivals {
            plan,
            seed,
            duration_ms: duration_ms.max(0),
            next_hour: 0,
            hours,
            slots: Vec::new(),
            pos: 0,
            rng: StdRng::seed_from_u64(seed),
            pending: BinaryHeap::new(),
            incidents: BTreeMap::new(),
            next_incident: 1,
            seq: 0,
            number: 0,
            keep: None,
        }
    }
}

fn check_mix(field: &str, mix: &[(String, u32)]) -> Result<(), String> {
    let sum: u64 = mix.iter().map(|(_, w)| u64::from(*w)).sum();
    if sum != 1000 {
        return Err(format!(
            "workload: {field} sums to {sum} ‰; it must sum to 1000"
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in mix {
        if !seen.insert(name.as_str()) {
            return Err(format!("workload: {field}: \"{name}\" is listed twice"));
        }
    }
    Ok(())
}

/// Cities and their districts, from the division table (built once).
struct Geo {
    districts_of_city: BTreeMap<&'static str, Vec<&'static str>>,
    city_of_district: BTreeMap<&'static str, &'static str>,
}

fn geo() -> &'static Geo {
    static GEO: OnceLock<Geo> = OnceLock::new();
    GEO.get_or_init(|| {
        let r = regions();
        let mut districts_of_city = BTreeMap::new();
        let mut city_of_district = BTreeMap::new();
        for p in r.children("") {
            for c in r.children(p.code) {
                let ds: Vec<&'static str> = r.children(c.code).map(|d| d.code).collect();
                for &d in &ds {
                    city_of_district.insert(d, c.code);
                }
                districts_of_city.insert(c.code, ds);
            }
        }
        Geo {
            districts_of_city,
            city_of_district,
        }
    })
}

/// The streets (9-digit codes) of a district, cached for the process.
///
/// Street codes are the district's code plus three digits (true of the
/// whole table; a test checks), so the 1000 candidates are looked up, which
/// is ~4× faster than `Regions::children`, a scan of all 45k divisions.
fn streets_of(district: &'static str) -> Arc<[&'static str]> {
    type Streets = BTreeMap<&'static str, Arc<[&'static str]>>;
    static CACHE: OnceLock<Mutex<Streets>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(BTreeMap::new()));
    if let Some(s) = cache.lock().expect("street cache").get(district) {
        return Arc::clone(s);
    }
    let r = regions();
    let mut code = String::with_capacity(9);
    let mut streets = Vec::new();
    for i in 0..1000u32 {
        code.clear();
        code.push_str(district);
        for digit in [i / 100, i / 10 % 10, i % 10] {
            code.extend(char::from_digit(digit, 10));
        }
        if let Ok(s) = r.get(&code)
            && s.level == Level::Street
            && s.parent == district
        {
            streets.push(s.code);
        }
    }
    let streets: Arc<[&'static str]> = streets.into();
    cache
        .lock()
        .expect("street cache")
        .insert(district, Arc::clone(&streets));
    streets
}

/// Weighted choice over indices, weights in ‰ (or any integers).
#[derive(Clone, Debug)]
struct Picker {
    cumulative: Vec<u32>,
}

impl Picker {
    fn new(weights: impl IntoIterator<Item = u32>) -> Picker {
        let mut acc = 0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        Picker { cumulative }
    }

    fn total(&self) -> u32 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// An index; 0 if every weight is zero.
    fn pick(&self, rng: &mut StdRng) -> usize {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let r = rng.gen_range(0..total);
        self.cumulative.partition_point(|&c| c <= r)
    }
}

/// Log-uniform in [lo, hi): lo · (hi/lo)^u with u a 20-bit fraction, the
/// power taken as a product of repeated square roots (IEEE `sqrt` is
/// correctly rounded, so the result is the same on every platform).
#[derive(Clone, Debug)]
struct LogUniform {
    lo: f64,
    roots: [f64; 20],
}

impl LogUniform {
    fn new(lo: f64, hi: f64) -> LogUniform {
        let mut roots = [1.0; 20];
        let mut r = hi / lo;
        for root in &mut roots {
            r = r.sqrt();
            *root = r;
        }
        LogUniform { lo, roots }
    }

    fn sample(&self, rng: &mut StdRng) -> f64 {
        let u: u32 = rng.gen_range(0..1 << 20);
        let mut x = self.lo;
        for (k, root) in self.roots.iter().enumerate() {
            if u & (1 << (19 - k)) != 0 {
                x *= root;
            }
        }
        x
    }
}

/// A delay whose median is exact: log-uniform in [median/2, median] or
/// [median, max] with equal odds. In milliseconds.
#[derive(Clone, Debug)]
struct Delay {
    lower: LogUniform,
    upper: LogUniform,
}

impl Delay {
    fn new((median, max): (u32, u32)) -> Delay {
        let m = f64::from(median) * MINUTE_MS;
        Delay {
            lower: LogUniform::new(m / 2.0, m),
            upper: LogUniform::new(m, f64::from(max) * MINUTE_MS),
        }
    }

    fn sample(&self, rng: &mut StdRng, scale: f64) -> SimMs {
        let x = if rng.r#gen::<bool>() {
            self.lower.sample(rng)
        } else {
            self.upper.sample(rng)
        };
        ((x * scale).round() as SimMs).max(1)
    }
}

/// e^(−x) for 0 ≤ x ≤ 64 from basic IEEE operations only (the platform's
/// `exp` may differ in the last bit between machines).
fn exp_neg(x: f64) -> f64 {
    const INV_E: f64 = 0.367_879_441_171_442_33;
    let whole = x as u32;
    let frac = x - f64::from(whole);
    let mut r = 1.0;
    for _ in 0..whole {
        r *= INV_E;
    }
    // Taylor series of e^(−frac), frac in [0, 1): 20 terms reach 1e-19.
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=20 {
        term *= -frac / f64::from(k);
        sum += term;
    }
    r * sum
}

/// A Poisson draw: Knuth's product method on chunks of at most 32 (the sum
/// of independent Poisson draws is Poisson of the summed means).
fn poisson(rng: &mut StdRng, lambda: f64) -> u64 {
    let mut left = lambda;
    let mut n = 0;
    while left > 0.0 {
        let chunk = left.min(32.0);
        left -= chunk;
        let limit = exp_neg(chunk);
        let mut p = 1.0;
        loop {
            p *= rng.r#gen::<f64>();
            if p <= limit {
                break;
            }
            n += 1;
        }
    }
    n
}

/// One district that takes calls.
struct District {
    code: &'static str,
    province: &'static str,
    streets: Arc<[&'static str]>,
    per_day: f64,
    /// Mass incidents per day in this district.
    incidents_per_day: f64,
    /// Districts of the same province: `province_range` in `Plan::districts`
    /// (code order keeps a province contiguous).
    province_range: (u32, u32),
}

/// Everything the generator needs, precomputed from a workload and topology.
struct Plan {
    districts: Vec<District>,
    /// Diurnal share per hour of the day.
    hour_share: [f64; 24],
    surge: f64,
    kinds: Vec<String>,
    kind_picker: Picker,
    /// Kinds without consult, for mass incidents (None if all weight is consult).
    incident_kind_picker: Option<Picker>,
    consult: Option<usize>,
    categories: Vec<String>,
    category_picker: Picker,
    /// Non-consult share and the emergency / urgent thresholds in it (‰).
    non_consult: u32,
    emergency: u32,
    urgent: u32,
    /// Probability of a direct answer for a normal-priority consult / other kind.
    answer_consult: f64,
    answer_other: f64,
    other_region: u32,
    cross_province: u32,
    incident_size: (u32, u32),
    return_permille: u32,
    send_back_permille: u32,
    return_elsewhere_permille: u32,
    extension_permille: u32,
    reopen_permille: u32,
    satisfaction: Picker,
    dispatch: Delay,
    sign: Delay,
    reply: Delay,
    callback: Delay,
    /// Delay scale per (kind, category, priority), see `Workload::reply_min`.
    scale: Vec<f64>,
}

impl Plan {
    fn new(w: &Workload, topology: &Topology) -> Plan {
        let (volumes, national) = w.district_volumes(topology);
        let mut districts: Vec<District> = volumes
            .into_iter()
            .map(|(code, per_day)| District {
                code,
                province: &code[..2],
                streets: streets_of(code),
                per_day,
                incidents_per_day: if national > 0.0 {
                    f64::from(w.mass_incident_per_day) * per_day / national
                } else {
                    0.0
                },
                province_range: (0, 0),
            })
            .collect();
        let mut start = 0;
        for i in 0..=districts.len() {
            if i == districts.len() || districts[i].province != districts[start].province {
                for d in &mut districts[start..i] {
                    d.province_range = (start as u32, i as u32);
                }
                start = i;
            }
        }

        let total: u64 = w.diurnal.iter().map(|&x| u64::from(x)).sum();
        let mut hour_share = [0.0; 24];
        for (s, &x) in hour_share.iter_mut().zip(&w.diurnal) {
            *s = f64::from(x) / total as f64;
        }

        let kinds: Vec<String> = w.kind_mix.iter().map(|(k, _)| k.clone()).collect();
        let consult = kinds.iter().position(|k| k == "consult");
        let incident_weights: Vec<u32> = w
            .kind_mix
            .iter()
            .map(|(k, x)| if k == "consult" { 0 } else { *x })
            .collect();
        let incident_kind_picker = Some(Picker::new(incident_weights)).filter(|p| p.total() > 0);
        let consult_share = w.consult_share();
        let prio = w.emergency_permille + w.urgent_permille;
        let (answer_consult, answer_other) = if w.direct_answer_permille <= consult_share {
            let p = if consult_share == 0 {
                0.0
            } else {
                f64::from(w.direct_answer_permille) / f64::from(consult_share)
            };
            (p, 0.0)
        } else {
            let normal_other = 1000 - consult_share - prio;
            let p = if normal_other == 0 {
                0.0
            } else {
                f64::from(w.direct_answer_permille - consult_share) / f64::from(normal_other)
            };
            (1.0, p)
        };

        let categories: Vec<String> = w.category_mix.iter().map(|(c, _)| c.clone()).collect();
        let rules = DeadlineRules::builtin();
        let reply_max = f64::from(w.reply_min.1) * MINUTE_MS;
        let mut scale = Vec::with_capacity(kinds.len() * categories.len() * 3);
        for k in &kinds {
            for c in &categories {
                for p in PRIORITY_NAMES {
                    let deadline_ms = match rules.handling_span(k, c, p) {
                        Span::Hours(h) => f64::from(h) * 3_600_000.0,
                        // At least 24 h per working day.
                        Span::WorkingDays(n) => f64::from(n) * 86_400_000.0,
                    };
                    scale.push((DEADLINE_SHARE * deadline_ms / reply_max).min(1.0));
                }
            }
        }

        Plan {
            districts,
            hour_share,
            surge: w.surge(),
            kind_picker: Picker::new(w.kind_mix.iter().map(|(_, x)| *x)),
            kinds,
            incident_kind_picker,
            consult,
            category_picker: Picker::new(w.category_mix.iter().map(|(_, x)| *x)),
            categories,
            non_consult: 1000 - consult_share,
            emergency: w.emergency_permille,
            urgent: w.urgent_permille,
            answer_consult,
            answer_other,
            other_region: w.other_region_permille,
            cross_province: w.cross_province_share_of_other_permille,
            incident_size: w.mass_incident_size,
            return_permille: w.return_permille,
            send_back_permille: w.send_back_permille,
            return_elsewhere_permille: w.return_elsewhere_permille,
            extension_permille: w.extension_permille,
            reopen_permille: w.reopen_permille,
            satisfaction: Picker::new(w.satisfaction_mix),
            dispatch: Delay::new(w.dispatch_min),
            sign: Delay::new(w.sign_min),
            reply: Delay::new(w.reply_min),
            callback: Delay::new(w.callback_min),
            scale,
        }
    }

    /// 0 normal, 1 urgent, 2 emergency (index into `PRIORITY_NAMES`).
    fn priority(&self, rng: &mut StdRng, kind: usize) -> usize {
        if Some(kind) == self.consult || self.non_consult == 0 {
            return 0;
        }
        let r = rng.gen_range(0..self.non_consult);
        if r < self.emergency {
            2
        } else if r < self.emergency + self.urgent {
            1
        } else {
            0
        }
    }

    fn street(&self, rng: &mut StdRng, d: usize) -> &'static str {
        let d = &self.districts[d];
        if d.streets.is_empty() {
            d.code
        } else {
            d.streets[rng.gen_range(0..d.streets.len())]
        }
    }

    /// Where the problem of a call to district `d` is.
    fn location(&self, rng: &mut StdRng, d: usize) -> &'static str {
        if rng.gen_range(0..1000) >= self.other_region {
            return self.street(rng, d);
        }
        self.elsewhere(rng, d)
    }

    /// A street of another district than `d` (of another province with
    /// the cross-province share).
    fn elsewhere(&self, rng: &mut StdRng, d: usize) -> &'static str {
        let want_cross = rng.gen_range(0..1000) < self.cross_province;
        let n = self.districts.len() as u32;
        let (lo, hi) = self.districts[d].province_range;
        let same = hi - lo - 1;
        let other = n - (hi - lo);
        let cross = if want_cross { other > 0 } else { same == 0 };
        let target = if cross && other > 0 {
            let r = rng.gen_range(0..other);
            if r < lo { r } else { r + (hi - lo) }
        } else if same > 0 {
            let r = lo + rng.gen_range(0..same);
            if r >= d as u32 { r + 1 } else { r }
        } else {
            d as u32
        };
        self.street(rng, target as usize)
    }

    /// `d`: the caller's district, for a return that finds the place in
    /// another region; `None` for a mass incident's caller (its street is
    /// the incident's, and later callers are merged into the first).
    fn handling(
        &self,
        rng: &mut StdRng,
        d: Option<usize>,
        kind: usize,
        category: usize,
        priority: usize,
    ) -> Fate {
        let s = self.scale[(kind * self.categories.len() + category) * 3 + priority];
        let fast = if priority == 0 { 1.0 } else { s };
        let dispatch_after_ms = self.dispatch.sample(rng, fast);
        let sign_after_ms = self.sign.sample(rng, fast);
        let reply_after_ms = self.reply.sample(rng, s);
        let callback_after_ms = self.callback.sample(rng, 1.0);
        let returned = rng.gen_range(0..1000) < self.return_permille;
        let extended = rng.gen_range(0..1000) < self.extension_permille;
        let reopened = rng.gen_range(0..1000) < self.reopen_permille;
        let sent_back = rng.gen_range(0..1000) < self.send_back_permille;
        let satisfaction = SATISFACTION_NAMES[self.satisfaction.pick(rng)].to_string();
        // Drawn last, and only for a return when the share is not 0: a
        // workload without it draws what it drew before this share existed
        // (with it, every later draw of the hour moves).
        let moved_to = match d {
            Some(d)
                if returned
                    && self.return_elsewhere_permille > 0
                    && rng.gen_range(0..1000) < self.return_elsewhere_permille =>
            {
                self.elsewhere(rng, d).to_string()
            }
            _ => String::new(),
        };
        Fate::Handle(Handling {
            dispatch_after_ms,
            sign_after_ms,
            reply_after_ms,
            callback_after_ms,
            returned,
            extended,
            reopened,
            sent_back,
            moved_to,
            satisfaction,
        })
    }

    fn fate(
        &self,
        rng: &mut StdRng,
        d: usize,
        kind: usize,
        category: usize,
        priority: usize,
    ) -> Fate {
        if priority == 0 {
            let p = if Some(kind) == self.consult {
                self.answer_consult
            } else {
                self.answer_other
            };
            if p > 0.0 && rng.r#gen::<f64>() < p {
                return Fate::Answer {
                    after_ms: rng.gen_range(ANSWER_MS.0..=ANSWER_MS.1),
                };
            }
        }
        self.handling(rng, Some(d), kind, category, priority)
    }
}

/// One call of the current hour, before its attributes are drawn.
#[derive(Clone, Copy, Debug)]
struct Slot {
    at: SimMs,
    district: u32,
    /// 0: not part of a mass incident.
    incident: u64,
}

/// A mass incident in progress: what its callers share.
struct Incident {
    street: &'static str,
    kind: usize,
    category: usize,
    priority: usize,
    /// Callers not yet yielded.
    remaining: u32,
}

/// The arrivals of one run: an iterator in non-decreasing `at` order,
/// generated an hour at a time (memory: one hour's calls as 24-byte slots,
/// plus mass-incident callers still to come).
pub struct Arrivals {
    plan: Plan,
    seed: u64,
    duration_ms: SimMs,
    next_hour: SimMs,
    hours: SimMs,
    slots: Vec<Slot>,
    pos: usize,
    /// The current hour's generator.
    rng: StdRng,
    /// Incident callers after the current hour: (at, sequence, district, incident).
    pending: BinaryHeap<Reverse<(SimMs, u64, u32, u64)>>,
    incidents: BTreeMap<u64, Incident>,
    next_incident: u64,
    seq: u64,
    /// Slots taken so far, kept or not.
    number: u64,
    keep: Option<Vec<bool>>,
}

impl Arrivals {
    /// The generator of one hour: from (seed, hour) only, so generation is
    /// chunked deterministically.
    fn hour_rng(seed: u64, hour: SimMs) -> StdRng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&hour.to_le_bytes());
        key[16..24].copy_from_slice(b"workload");
        StdRng::from_seed(key)
    }

    /// Draws the next hour's calls and incidents into `slots`, sorted.
    fn generate_hour(&mut self) {
        let h = self.next_hour;
        self.next_hour += 1;
        let start = h * HOUR_MS;
        let end = ((h + 1) * HOUR_MS).min(self.duration_ms);
        let window = end - start;
        let covered = window as f64 / HOUR_MS as f64;
        let share = self.plan.hour_share[(h % 24) as usize] * covered;
        let mut rng = Arrivals::hour_rng(self.seed, h);
        self.slots.clear();
        self.pos = 0;
        let plan = &self.plan;
        for (i, d) in plan.districts.iter().enumerate() {
            let n = poisson(&mut rng, d.per_day * share * plan.surge);
            for _ in 0..n {
                self.slots.push(Slot {
                    at: start + rng.gen_range(0..window),
                    district: i as u32,
                    incident: 0,
                });
            }
            let k = poisson(&mut rng, d.incidents_per_day * share);
            for _ in 0..k {
                let id = self.next_incident;
                self.next_incident += 1;
                let t0 = start + rng.gen_range(0..window);
                let street = plan.street(&mut rng, i);
                let kind = match &plan.incident_kind_picker {
                    Some(p) => p.pick(&mut rng),
                    None => plan.kind_picker.pick(&mut rng),
                };
                let category = plan.category_picker.pick(&mut rng);
                let priority = plan.priority(&mut rng, kind);
                let size = rng.gen_range(plan.incident_size.0..=plan.incident_size.1);
                let mut kept = 0;
                for j in 0..size {
                    let at = if j == 0 {
                        t0
                    } else {
                        t0 + rng.gen_range(0..INCIDENT_SPREAD_MS)
                    };
                    if at < self.duration_ms {
                        self.pending.push(Reverse((at, self.seq, i as u32, id)));
                        self.seq += 1;
                        kept += 1;
                    }
                }
                self.incidents.insert(
                    id,
                    Incident {
                        street,
                        kind,
                        category,
                        priority,
                        remaining: kept,
                    },
                );
            }
        }
        while let Some(Reverse((at, _, district, incident))) = self.pending.peek().copied() {
            if at >= end {
                break;
            }
            self.pending.pop();
            self.slots.push(Slot {
                at,
                district,
                incident,
            });
        }
        // Stable: ties keep generation order.
        self.slots.sort_by_key(|s| s.at);
        self.rng = rng;
    }

    /// What a slot's caller is about: the draws from the hour's generator,
    /// in a fixed order (a skipped slot draws them too, so the stream stays
    /// the same).
    fn draw(&mut self, slot: Slot) -> Drawn {
        let plan = &self.plan;
        let rng = &mut self.rng;
        let d = slot.district as usize;
        let (location, kind, category, priority, fate) =
            match self.incidents.get_mut(&slot.incident) {
                Some(inc) => {
                    let (k, c, p) = (inc.kind, inc.category, inc.priority);
                    let street = inc.street;
                    inc.remaining -= 1;
                    if inc.remaining == 0 {
                        self.incidents.remove(&slot.incident);
                    }
                    // A mass incident is always dispatched (the engine merges
                    // later callers into the first ticket).
                    (street, k, c, p, plan.handling(rng, None, k, c, p))
                }
                None => {
                    let location = plan.location(rng, d);
                    let k = plan.kind_picker.pick(rng);
                    let c = plan.category_picker.pick(rng);
                    let p = plan.priority(rng, k);
                    (location, k, c, p, plan.fate(rng, d, k, c, p))
                }
            };
        let phone = rng.gen_range(0..1_000_000_000u32);
        Drawn {
            location,
            kind,
            category,
            priority,
            fate,
            phone,
        }
    }

    fn materialise(&mut self, slot: Slot) -> Arrival {
        let drawn = self.draw(slot);
        let plan = &self.plan;
        Arrival {
            at: slot.at,
            region: plan.districts[slot.district as usize].code.to_string(),
            location: drawn.location.to_string(),
            kind: plan.kinds[drawn.kind].clone(),
            category: plan.categories[drawn.category].clone(),
            priority: PRIORITY_NAMES[drawn.priority].to_string(),
            phone: format!("13{:09}", drawn.phone),
            fate: drawn.fate,
            incident: (slot.incident != 0).then_some(slot.incident),
            number: self.number - 1,
        }
    }

    /// The districts calls come from, by the index `keep_only` takes.
    pub fn district_codes(&self) -> Vec<&'static str> {
        self.plan.districts.iter().map(|d| d.code).collect()
    }

    /// Yields only the calls of districts whose index is set (a simulator
    /// shard runs some groups only); the others are drawn all the same and
    /// counted in `Arrival::number`.
    pub fn keep_only(&mut self, keep: Vec<bool>) {
        self.keep = Some(keep);
    }
}

/// A slot's draws.
struct Drawn {
    location: &'static str,
    kind: usize,
    category: usize,
    priority: usize,
    fate: Fate,
    phone: u32,
}

impl Iterator for Arrivals {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        loop {
            if let Some(&slot) = self.slots.get(self.pos) {
                self.pos += 1;
                self.number += 1;
                if let Some(keep) = &self.keep
                    && !keep.get(slot.district as usize).copied().unwrap_or(true)
                {
                    self.draw(slot);
                    continue;
                }
                return Some(self.materialise(slot));
            }
            if self.next_hour >= self.hours {
                return None;
            }
            self.generate_hour();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_federation::topology::Scope;

    const DAY_MS: SimMs = 24 * HOUR_MS;

    fn shanghai() -> Topology {
        Topology::generate(Scope::City("3101"), None).unwrap()
    }

    fn permille(n: usize, of: usize) -> f64 {
        n as f64 * 1000.0 / of as f64
    }

    /// A shard's stream is the whole stream without the other districts'
    /// calls: the same calls, numbered as in the whole stream.
    #[test]
    fn keep_only_yields_the_kept_districts_calls_of_the_same_stream() {
        let topo = shanghai();
        let w = Workload::default();
        let all: Vec<Arrival> = w.arrivals(&topo, HOUR_MS, 9).collect();
        let mut some = w.arrivals(&topo, HOUR_MS, 9);
        let codes = some.district_codes();
        let keep: Vec<bool> = (0..codes.len()).map(|i| i % 3 == 0).collect();
        let kept_codes: Vec<&str> = codes
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(c, _)| *c)
            .collect();
        some.keep_only(keep);
        let some: Vec<Arrival> = some.collect();
        let want: Vec<&Arrival> = all
            .iter()
            .filter(|a| kept_codes.contains(&a.region.as_str()))
            .collect();
        assert!(!want.is_empty() && want.len() < all.len());
        assert_eq!(some.iter().collect::<Vec<_>>(), want);
        assert!(all.iter().enumerate().all(|(i, a)| a.number == i as u64));
    }

    #[test]
    fn builtin_parses_and_sets_every_field() {
        let w = Workload::default();
        assert_eq!(w, Workload::parse(Workload::BUILTIN_TOML).unwrap());
        assert_eq!(w.direct_answer_permille, 620);
        let file: toml::Table = toml::from_str(Workload::BUILTIN_TOML).unwrap();
        let fields = toml::Table::try_from(Workload::blank()).unwrap();
        let missing: Vec<_> = fields.keys().filter(|k| !file.contains_key(*k)).collect();
        assert!(missing.is_empty(), "workload.toml does not set {missing:?}");
    }

    #[test]
    fn a_partial_file_keeps_the_defaults_and_round_trips() {
        let w = Workload::parse("holiday = true\ntickets_per_day = 3000000").unwrap();
        assert!(w.holiday);
        assert_eq!(w.tickets_per_day, 3_000_000);
        assert_eq!(w.kind_mix, Workload::default().kind_mix);
        let text = toml::to_string(&w).unwrap();
        assert_eq!(Workload::parse(&text).unwrap(), w);
    }

    #[test]
    fn bad_files_are_rejected_naming_the_field() {
        let bad = |text: &str, want: &str| {
            let e = Workload::parse(text).unwrap_err();
            assert!(
                e.contains(want),
                "{text:?}: {e:?} does not mention {want:?}"
            );
        };
        bad("nonsense = 1", "unknown field");
        bad(r#"kind_mix = [["consult", 900]]"#, "kind_mix sums to 900");
        bad(r#"kind_mix = [["gripe", 1000]]"#, "unknown kind \"gripe\"");
        bad(
            r#"kind_mix = [["consult", 500], ["consult", 500]]"#,
            "listed twice",
        );
        bad(
            r#"category_mix = [["交通运输", 999]]"#,
            "category_mix sums to 999",
        );
        bad(r#"category_mix = [["交通运输/飞机", 1000]]"#, "飞机");
        bad(
            "satisfaction_mix = [900, 50, 40]",
            "satisfaction_mix sums to 990",
        );
        bad("other_region_permille = 1001", "other_region_permille");
        bad(
            "diurnal = [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]",
            "diurnal",
        );
        bad("mass_incident_size = [10, 5]", "mass_incident_size");
        bad("reply_min = [100, 50]", "reply_min");
        bad("sign_min = [0, 50]", "sign_min");
        bad(r#"city_tickets_per_day = [["9999", 10]]"#, "\"9999\"");
        bad(r#"city_tickets_per_day = [["310101", 10]]"#, "\"310101\"");
        bad("tickets_per_day = 1000", "city_tickets_per_day sums to");
        bad(
            "emergency_permille = 100\nurgent_permille = 100",
            "non-consult",
        );
        bad(
            "direct_answer_permille = 1000",
            "direct_answer_permille = 1000 cannot be met",
        );
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let t = shanghai();
        let w = Workload::default();
        let a: Vec<Arrival> = w.arrivals(&t, DAY_MS, 7).take(10_000).collect();
        let b: Vec<Arrival> = w.arrivals(&t, DAY_MS, 7).take(10_000).collect();
        assert_eq!(a.len(), 10_000);
        assert_eq!(a, b);
        let c: Vec<Arrival> = w.arrivals(&t, DAY_MS, 8).take(10_000).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn a_shanghai_day_matches_the_figures() {
        let t = shanghai();
        let w = Workload::default();
        let all: Vec<Arrival> = w.arrivals(&t, DAY_MS, 1).collect();
        let n = all.len();
        let expected = w.expected(&t, DAY_MS);
        // 27,392 calls (seed 001) plus ≈1.2 mass incidents of ≈40 callers.
        assert!((27_392..27_600).contains(&expected), "expected {expected}");
        assert!(
            (n as f64 - 27_392.0).abs() < 27_392.0 * 0.05,
            "{n} arrivals, not ≈27,392"
        );
        assert!((n as f64 - expected as f64).abs() < 4.0 * (expected as f64).sqrt() + 200.0);

        // Ordered, in range, in districts of the topology.
        assert!(all.windows(2).all(|p| p[0].at <= p[1].at));
        assert!(all.iter().all(|a| (0..DAY_MS).contains(&a.at)));
        let districts: std::collections::BTreeSet<&str> = t
            .groups
            .iter()
            .map(|g| g.region.as_str())
            .filter(|r| r.len() == 6)
            .collect();
        assert_eq!(districts.len(), 16);
        assert!(all.iter().all(|a| districts.contains(a.region.as_str())));

        // Kind mix within ±2 % (20 ‰) of the config.
        for (kind, share) in &w.kind_mix {
            let got = permille(all.iter().filter(|a| &a.kind == kind).count(), n);
            assert!(
                (got - f64::from(*share)).abs() < 20.0,
                "{kind}: {got} ‰ vs {share} ‰"
            );
        }
        // Category: the biggest one within ±2 %.
        let got = permille(
            all.iter()
                .filter(|a| a.category == "商贸旅游/市场监管")
                .count(),
            n,
        );
        assert!((got - 109.0).abs() < 20.0, "市场监管 {got} ‰");

        // About other districts: ≈17.5 %, and only districts of the topology.
        let other: Vec<&Arrival> = all.iter().filter(|a| a.location[..6] != a.region).collect();
        let got = permille(other.len(), n);
        assert!((got - 175.0).abs() < 15.0, "other district {got} ‰");
        assert!(other.iter().all(|a| districts.contains(&a.location[..6])));
        // Locations are streets of their district where it has any.
        assert!(all.iter().all(|a| a.location.len() == 9));

        // Direct answers ≈ 62 %, consults answered most.
        let answered = |a: &&Arrival| matches!(a.fate, Fate::Answer { .. });
        let got = permille(all.iter().filter(answered).count(), n);
        assert!((got - 620.0).abs() < 15.0, "direct answers {got} ‰");
        assert!(
            all.iter()
                .filter(answered)
                .all(|a| a.kind == "consult" && a.priority == "normal")
        );

        // Priorities only on non-consult kinds; ≈13 ‰ of all items.
        assert!(
            all.iter()
                .filter(|a| a.kind == "consult")
                .all(|a| a.priority == "normal")
        );
        let got = permille(all.iter().filter(|a| a.priority != "normal").count(), n);
        assert!((got - 13.0).abs() < 4.0, "urgent + emergency {got} ‰");

        // Phones: 11 digits starting 13.
        assert!(all.iter().all(|a| a.phone.len() == 11
            && a.phone.starts_with("13")
            && a.phone.bytes().all(|b| b.is_ascii_digit())));
    }

    #[test]
    fn handling_follows_the_config_and_the_deadlines() {
        let t = shanghai();
        let w = Workload::default();
        let handled: Vec<(Arrival, Handling)> = w
            .arrivals(&t, DAY_MS, 3)
            .filter_map(|a| match a.fate.clone() {
                Fate::Handle(h) => Some((a, h)),
                Fate::Answer { after_ms } => {
                    assert!((60_000..=600_000).contains(&after_ms));
                    None
                }
            })
            .collect();
        let n = handled.len();
        assert!(n > 8_000, "{n} handled");
        let share = |f: &dyn Fn(&Handling) -> bool| {
            permille(handled.iter().filter(|(_, h)| f(h)).count(), n)
        };
        assert!((share(&|h| h.returned) - 40.0).abs() < 10.0);
        assert!((share(&|h| h.extended) - 30.0).abs() < 10.0);
        assert!((share(&|h| h.reopened) - 20.0).abs() < 8.0);
        assert!((share(&|h| h.satisfaction == "unsatisfied") - 40.0).abs() < 10.0);
        assert!((share(&|h| h.satisfaction == "satisfied") - 800.0).abs() < 25.0);

        // Reports (15 WD) keep the configured reply median of 2 days; every
        // reply stays within 80 % of its deadline.
        let rules = DeadlineRules::builtin();
        for (a, h) in &handled {
            let limit = match rules.handling_span(&a.kind, &a.category, &a.priority) {
                Span::Hours(x) => i64::from(x) * HOUR_MS,
                Span::WorkingDays(x) => i64::from(x) * DAY_MS,
            };
            assert!(
                h.reply_after_ms <= limit * 8 / 10 + 1,
                "{a:?}: reply {} ms over 80 % of {limit} ms",
                h.reply_after_ms
            );
            assert!(h.dispatch_after_ms >= 1 && h.sign_after_ms >= 1);
            assert!(h.callback_after_ms <= 2304 * 60_000 + 1);
        }
        let mut dispatch: Vec<SimMs> = handled
            .iter()
            .filter(|(a, _)| a.priority == "normal")
            .map(|(_, h)| h.dispatch_after_ms)
            .collect();
        dispatch.sort_unstable();
        let median = dispatch[dispatch.len() / 2];
        assert!(
            (330_000..390_000).contains(&median),
            "dispatch median {median} ms"
        );
    }

    #[test]
    fn mass_incidents_gather_dozens_about_one_street_within_hours() {
        let t = shanghai();
        let w = Workload {
            mass_incident_per_day: 20_000,
            ..Workload::default()
        };
        let mut by_incident: BTreeMap<u64, Vec<Arrival>> = BTreeMap::new();
        for a in w.arrivals(&t, 12 * HOUR_MS, 5) {
            if let Some(id) = a.incident {
                by_incident.entry(id).or_default().push(a);
            }
        }
        assert!(by_incident.len() >= 10, "{} incidents", by_incident.len());
        for calls in by_incident.values() {
            let first = &calls[0];
            assert!(calls.len() <= 60);
            for c in calls {
                assert_eq!((&c.location, &c.region), (&first.location, &first.region));
                assert_eq!((&c.kind, &c.category), (&first.kind, &first.category));
                assert_ne!(c.kind, "consult");
                assert!(matches!(c.fate, Fate::Handle(_)));
                assert!(c.at - first.at < INCIDENT_SPREAD_MS);
            }
        }
        // Incidents that end before the run ends are complete.
        assert!(
            by_incident
                .values()
                .filter(|c| c[0].at < 9 * HOUR_MS)
                .all(|c| c.len() >= 20)
        );
    }

    #[test]
    fn holiday_surge_and_partial_hours() {
        let t = shanghai();
        let w = Workload::default();
        let holiday = Workload {
            holiday: true,
            ..Workload::default()
        };
        let normal = w.expected(&t, DAY_MS) as f64;
        let surged = holiday.expected(&t, DAY_MS) as f64;
        assert!((surged / normal - 1.52).abs() < 0.01, "{surged} / {normal}");
        // 90 minutes: the second hour counts half.
        let part = w.expected(&t, 90 * 60_000) as f64;
        let want = 27_392.0 * (6.0 + 4.0 / 2.0) / 843.0;
        assert!((part - want).abs() < 2.0, "{part} vs {want}");
        let all: Vec<Arrival> = w.arrivals(&t, 90 * 60_000, 2).collect();
        assert!(all.iter().all(|a| a.at < 90 * 60_000));
        assert_eq!(w.arrivals(&t, 0, 2).count(), 0);
    }

    #[test]
    fn volumes_follow_the_city_figures() {
        let w = Workload::default();
        let beijing = Topology::generate(Scope::City("1101"), None).unwrap();
        assert!((58_712..58_900).contains(&w.expected(&beijing, DAY_MS)));
        // A city without a figure gets an even per-district share of the rest.
        let t = Topology::generate(Scope::City("3302"), None).unwrap();
        let districts = t.groups.iter().filter(|g| g.region.len() == 6).count() as f64;
        let known: u64 = w.city_tickets_per_day.iter().map(|(_, n)| n).sum();
        let other_districts = geo()
            .districts_of_city
            .iter()
            .filter(|(c, _)| !w.city_tickets_per_day.iter().any(|(k, _)| k == *c))
            .map(|(_, d)| d.len())
            .sum::<usize>() as f64;
        let want = (w.tickets_per_day - known) as f64 / other_districts * districts;
        let got = w.expected(&t, DAY_MS) as f64;
        assert!((got / want - 1.0).abs() < 0.01, "{got} vs {want}");
        // Scaled for a short run: the same shape at the asked volume.
        let small = w.scaled_to(&shanghai(), 2_000);
        let got = small.expected(&shanghai(), DAY_MS);
        assert!((1_990..2_020).contains(&got), "{got}");
        assert_eq!(small.kind_mix, w.kind_mix);
    }

    #[test]
    fn the_demo_topology_sends_some_calls_across_provinces() {
        let t = Topology::demo();
        let w = Workload::default();
        let all: Vec<Arrival> = w.arrivals(&t, 12 * HOUR_MS, 9).collect();
        let cross = all
            .iter()
            .filter(|a| a.location[..2] != a.region[..2])
            .count();
        // 310114, 310101 (上海) and 320585 (苏州): cross-province calls go to
        // the other province; same-province ones from 320585 have no other
        // district, so they go to 上海 too.
        assert!(cross > 0);
        let groups: std::collections::BTreeSet<&str> =
            t.groups.iter().map(|g| g.region.as_str()).collect();
        assert!(all.iter().all(|a| groups.contains(&a.location[..6])));
    }

    #[test]
    fn samplers_are_sane() {
        let mut rng = StdRng::seed_from_u64(1);
        for lambda in [0.0, 0.3, 5.0, 31.9, 32.0, 100.0, 1000.0] {
            let n = 4_000;
            let sum: u64 = (0..n).map(|_| poisson(&mut rng, lambda)).sum();
            let mean = sum as f64 / f64::from(n);
            assert!(
                (mean - lambda).abs() <= 4.0 * (lambda / f64::from(n)).sqrt() + 1e-9,
                "λ {lambda}: mean {mean}"
            );
        }
        for x in [0.0, 0.5, 1.0, 7.25, 32.0, 64.0] {
            let e = exp_neg(x);
            assert!(((e - (-x).exp()) / (-x).exp()).abs() < 1e-13, "e^-{x}");
        }
        let d = Delay::new((120, 1080));
        let mut xs: Vec<SimMs> = (0..10_001).map(|_| d.sample(&mut rng, 1.0)).collect();
        xs.sort_unstable();
        assert!(xs[0] >= 60 * 60_000 && xs[10_000] <= 1080 * 60_000);
        let median = xs[5_000] as f64 / 60_000.0;
        assert!((median - 120.0).abs() < 6.0, "median {median} min");
    }

    #[test]
    fn street_lookup_matches_the_division_table() {
        let r = regions();
        for city in ["3101", "3505", "4419", "6590", "1101"] {
            for d in &geo().districts_of_city[city] {
                let want: Vec<&str> = r.children(d).map(|s| s.code).collect();
                assert_eq!(&*streets_of(d), &want[..], "{d}");
            }
        }
    }

    /// A national day: ≥ 2,000,000 arrivals, generated lazily.
    #[test]
    #[ignore = "release: cargo test -p hotline-simulator --release --lib workload -- --ignored"]
    fn a_national_day_streams() {
        let started = std::time::Instant::now();
        let t = Topology::generate(Scope::National, None).unwrap();
        let w = Workload::default();
        let expected = w.expected(&t, DAY_MS);
        let mut n: u64 = 0;
        let mut last = 0;
        let mut cross = 0u64;
        let planned = std::time::Instant::now();
        let arrivals = w.arrivals(&t, DAY_MS, 1);
        let plan_s = planned.elapsed().as_secs_f64();
        for a in arrivals {
            assert!(a.at >= last);
            last = a.at;
            if a.location[..2] != a.region[..2] {
                cross += 1;
            }
            n += 1;
        }
        eprintln!(
            "national day: {n} arrivals (expected {expected}), {cross} cross-province, \
             {:.2} s ({plan_s:.2} s planning)",
            started.elapsed().as_secs_f64()
        );
        assert!(n >= 2_000_000, "{n}");
        assert!((n as f64 - expected as f64).abs() < 0.01 * expected as f64);
        // 17.5 % × 30 % ≈ 5.25 % cross-province.
        let got = permille(cross as usize, n as usize);
        assert!((got - 52.5).abs() < 3.0, "cross-province {got} ‰");
    }
}
