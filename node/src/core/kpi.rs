//! KPIs of a region group's tickets (考核指标): the "三率" and the timeliness
//! rates a supervisor ranks units by.
//!
//! Pure and deterministic, like the rest of `core`: no clock (the caller gives
//! the period), no floats (every rate is an integer per-mille), ordered maps
//! only (the same tickets in any order give the same report, byte for byte).
//!
//! # Which tickets
//!
//! A ticket is in the report when it was **accepted** in `[from_ms, to_ms)`
//! (`accepted_at_ms`; `to_ms` is exclusive and must already be resolved by the
//! caller: "0 = now" of `ReportRequest` is the driver's business, the core has
//! no clock). The region scope covers every ticket given (the caller passes the
//! group's tickets, whatever street code each one carries); each unit scope
//! covers the tickets whose `lead_unit` (主办单位) is that unit.
//!
//! - `total` and the volume sections `by_kind`, `by_category`, `by_status`,
//!   `by_district` count **every** ticket in the period, merged duplicates included: each
//!   one was a call. Their `permille` is the share of `total`.
//! - Tickets merged into another (status `MERGED`, 已并单) are **excluded from
//!   every rate** and from `Kpis::tickets`: the master ticket carries the case.
//!   So `total - region.tickets` is the number of merged duplicates.
//!
//! # The rates (numerator / denominator, per scope)
//!
//! Callback rates look at the **last** callback (回访) only: after a reopen
//! (重办) the new callback supersedes the old one.
//!
//! | rate | numerator | denominator |
//! |---|---|---|
//! | 响应率 `response` | last callback says the unit contacted the requester (`contacted`) | tickets with at least one callback |
//! | 解决率 `resolution` | last callback's resolution is RESOLVED | tickets whose last callback has a resolution (≠ UNSPECIFIED) |
//! | 满意率 `satisfaction` | `satisfied × 1000 + basic × w` | `rated × 1000`, rated = last callback has a satisfaction (≠ UNSPECIFIED) |
//! | 及时签收率 `on_time_sign` | signed and `signed_in_time` | signed (`signed_at_ms ≠ 0`) |
//! | 按时办结率 `on_time_reply` | replied and `replied_in_time` | replied (`replied_at_ms ≠ 0`) |
//! | 退单率 `returns` | dispatched and `returns > 0` | dispatched (`first_dispatched_at_ms ≠ 0`) |
//! | 重办率 `reopens` | replied and `reopens > 0` | replied |
//! | 直接答复率 `direct_answer` | closure ANSWERED (直接答复) | all tickets of the scope |
//!
//! - **部分解决 (PARTLY) counts as not resolved** in the resolution rate: it
//!   is in the denominator, never in the numerator. Simple and strict; the
//!   published practice varies ("may count partly", research notes §3.1).
//! - **基本满意 (BASIC) counts `w`/1000 of a satisfied answer**, `w` =
//!   [`KpiWeights::basic_permille`] (capped at 1000). A `Rate` holds integers,
//!   so the satisfaction rate is kept in thousandths of a ticket: numerator
//!   `satisfied × 1000 + basic × w`, denominator `rated × 1000`. Divide both by
//!   1000 to read them as tickets.
//! - 响应率 uses `contacted` as the unit's contact check (先行联系) recorded at
//!   callback; `CallbackResult::in_time` is the callback's own timeliness and
//!   does not enter any rate.
//! - Every rate's `permille` is rounded half up, and is 0 when the
//!   denominator is 0 (no data is shown as 0/0, never as a division by zero).
//!
//! # The composite (综合)
//!
//! `composite_permille = (response‰ × w_r + resolution‰ × w_s + satisfaction‰ × w_sat)
//! / (w_r + w_s + w_sat)`, rounded half up, 0 when the weights sum to 0. A
//! scope without callbacks has a composite of 0.
//!
//! # Keys and order
//!
//! `units` has one entry per non-empty `lead_unit` of a non-merged ticket,
//! sorted by unit name, scope `"unit {name}"`; the region's scope is
//! `"region {scope_region}"`. `by_kind` keys are `consult`, `help`,
//! `complaint`, `report`, `suggestion`, `praise`; `by_category` keys are the
//! top-level category (the path before the first `/`); `by_status` keys are
//! `accepted`, `awaiting_sign`, `handling`, `return_review`,
//! `awaiting_callback`, `closed`, `archived`, `merged`. A missing kind,
//! category or status is keyed `unspecified`. Sections are sorted by count,
//! descending, then by key.

use std::collections::BTreeMap;

use hotline_proto::v1::{
    CallbackResult, Closure, CountShare, Kpis, Rate, ReportResponse, Resolution, Satisfaction,
    Status, Ticket, TransferState,
};

/// Weights of the KPIs, in per-mille.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KpiWeights {
    /// Weight of 基本满意 in the satisfaction rate (1000 = as good as 满意).
    pub basic_permille: u32,
    /// Weight of 响应率 in the composite.
    pub response_permille: u32,
    /// Weight of 解决率 in the composite.
    pub resolution_permille: u32,
    /// Weight of 满意率 in the composite.
    pub satisfaction_permille: u32,
}

impl Default for KpiWeights {
    /// - 基本满意 counts 0.6 of 满意: the weight is a local policy and
    ///   configurable (DESIGN.md §3, "KPIs (configurable weights)"); 600 is
    ///   our default, not a published figure.
    /// - Composite 30/35/35 (响应/解决/满意) is the one published weighting
    ///   found (准格尔旗, research notes 12345-domain.md §3.1); Beijing has
    ///   since revised its own weights, so keep these configurable.
    fn default() -> Self {
        KpiWeights {
            basic_permille: 600,
            response_permille: 300,
            resolution_permille: 350,
            satisfaction_permille: 350,
        }
    }
}

impl KpiWeights {
    /// These weights with 基本满意 weighted `basic_permille`, or unchanged when
    /// it is 0 (`ReportRequest::basic_weight_permille`: "0 = policy default").
    pub fn with_basic_permille(self, basic_permille: u32) -> Self {
        if basic_permille == 0 {
            self
        } else {
            KpiWeights {
                basic_permille,
                ..self
            }
        }
    }
}

/// `numerator / denominator` in per-mille, rounded half up; 0 when the
/// denominator is 0.
pub fn rate(numerator: u64, denominator: u64) -> Rate {
    let permille = if denominator == 0 {
        0
    } else {
        // floor(n·1000/d + 1/2) = floor((2000·n + d) / 2d), exact in u128.
        let n = u128::from(numerator);
        let d = u128::from(denominator);
        let p = (2000 * n + d) / (2 * d);
        u32::try_from(p).unwrap_or(u32::MAX)
    };
    Rate {
        numerator,
        denominator,
        permille,
    }
}

/// KPIs of the tickets accepted in [from_ms, to_ms), for the group's region and per lead unit.
pub fn report<'a>(
    scope_region: &str,
    tickets: impl IntoIterator<Item = &'a Ticket>,
    from_ms: i64,
    to_ms: i64,
    w: &KpiWeights,
) -> ReportResponse {
    let mut total = 0u64;
    let mut in_transit = 0u64;
    let mut region = Tally::default();
    let mut units: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut by_category: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut by_district: BTreeMap<&str, u64> = BTreeMap::new();

    for t in tickets {
        if t.accepted_at_ms < from_ms || t.accepted_at_ms >= to_ms {
            continue;
        }
        // A transferred ticket's stub: the ticket is counted (and judged)
        // where it is owned, so a federated sum counts it once. Until the
        // receipt says it arrived, it is in transit, counted apart.
        if t.status == Status::Transferred as i32 {
            if t.transfer_state != TransferState::Delivered as i32 {
                in_transit += 1;
            }
            continue;
        }
        total += 1;
        *by_kind
            .entry(super::tickets::kind_name(t.kind))
            .or_default() += 1;
        *by_category.entry(top_category(&t.category)).or_default() += 1;
        *by_status
            .entry(super::lifecycle::status_name(t.status))
            .or_default() += 1;
        *by_district.entry(district_of(t, scope_region)).or_default() += 1;
        if t.status == Status::Merged as i32 {
            continue;
        }
        region.add(t);
        if !t.lead_unit.is_empty() {
            units.entry(t.lead_unit.as_str()).or_default().add(t);
        }
    }

    ReportResponse {
        from_ms,
        to_ms,
        region: Some(region.kpis(format!("region {scope_region}"), w)),
        units: units
            .into_iter()
            .map(|(name, tally)| tally.kpis(format!("unit {name}"), w))
            .collect(),
        by_kind: shares(by_kind, total),
        by_category: shares(by_category, total),
        by_status: shares(by_status, total),
        by_district: shares(by_district, total),
        total,
        in_transit,
    }
}

/// The district (county-level code, 6 digits) a ticket is counted in: of
/// the place it is about when that lies in the group's own region, else of
/// the center that accepted it (a ticket about a place no region group
/// serves stays, and counts, at its first-contact center); a city or
/// province code when that is all the ticket names.
fn district_of<'t>(t: &'t Ticket, scope_region: &str) -> &'t str {
    let code = t
        .location
        .as_ref()
        .map(|l| l.code.as_str())
        .filter(|c| !c.is_empty() && c.starts_with(scope_region))
        .unwrap_or(t.region.as_str());
    code.get(..6).unwrap_or(code)
}

/// Counts of one scope, turned into rates at the end.
#[derive(Default)]
struct Tally {
    tickets: u64,
    called_back: u64,
    contacted: u64,
    resolution_rated: u64,
    resolved: u64,
    satisfaction_rated: u64,
    satisfied: u64,
    basic: u64,
    signed: u64,
    signed_in_time: u64,
    replied: u64,
    replied_in_time: u64,
    reopened: u64,
    dispatched: u64,
    returned: u64,
    answered: u64,
}

impl Tally {
    fn add(&mut self, t: &Ticket) {
        self.tickets += 1;
        if let Some(cb) = t.callbacks.last() {
            self.add_callback(cb);
        }
        if t.signed_at_ms != 0 {
            self.signed += 1;
            self.signed_in_time += u64::from(t.signed_in_time);
        }
        if t.replied_at_ms != 0 {
            self.replied += 1;
            self.replied_in_time += u64::from(t.replied_in_time);
            self.reopened += u64::from(t.reopens > 0);
        }
        if t.first_dispatched_at_ms != 0 {
            self.dispatched += 1;
            self.returned += u64::from(t.returns > 0);
        }
        self.answered += u64::from(t.closure == Closure::Answered as i32);
    }

    fn add_callback(&mut self, cb: &CallbackResult) {
        self.called_back += 1;
        self.contacted += u64::from(cb.contacted);
        match Resolution::try_from(cb.resolution) {
            Ok(Resolution::Resolved) => {
                self.resolution_rated += 1;
                self.resolved += 1;
            }
            // PARTLY counts as not resolved (module doc).
            Ok(Resolution::Partly | Resolution::Unresolved) => self.resolution_rated += 1,
            Ok(Resolution::Unspecified) | Err(_) => {}
        }
        match Satisfaction::try_from(cb.satisfaction) {
            Ok(Satisfaction::Satisfied) => {
                self.satisfaction_rated += 1;
                self.satisfied += 1;
            }
            Ok(Satisfaction::Basic) => {
                self.satisfaction_rated += 1;
                self.basic += 1;
            }
            Ok(Satisfaction::Unsatisfied) => self.satisfaction_rated += 1,
            Ok(Satisfaction::Unspecified) | Err(_) => {}
        }
    }

    fn kpis(&self, scope: String, w: &KpiWeights) -> Kpis {
        let basic_weight = u64::from(w.basic_permille.min(1000));
        let response = rate(self.contacted, self.called_back);
        let resolution = rate(self.resolved, self.resolution_rated);
        let satisfaction = rate(
            self.satisfied * 1000 + self.basic * basic_weight,
            self.satisfaction_rated * 1000,
        );
        let composite_permille = composite(&response, &resolution, &satisfaction, w);
        Kpis {
            scope,
            tickets: self.tickets,
            response: Some(response),
            resolution: Some(resolution),
            satisfaction: Some(satisfaction),
            composite_permille,
            on_time_sign: Some(rate(self.signed_in_time, self.signed)),
            on_time_reply: Some(rate(self.replied_in_time, self.replied)),
            returns: Some(rate(self.returned, self.dispatched)),
            reopens: Some(rate(self.reopened, self.replied)),
            direct_answer: Some(rate(self.answered, self.tickets)),
        }
    }
}

/// Weighted mean of the three rates' per-mille, rounded half up.
fn composite(response: &Rate, resolution: &Rate, satisfaction: &Rate, w: &KpiWeights) -> u32 {
    let parts = [
        (response.permille, w.response_permille),
        (resolution.permille, w.resolution_permille),
        (satisfaction.permille, w.satisfaction_permille),
    ];
    let weights: u64 = parts.iter().map(|&(_, wt)| u64::from(wt)).sum();
    let weighted: u64 = parts
        .iter()
        .map(|&(p, wt)| u64::from(p) * u64::from(wt))
        .sum();
    rate(weighted, weights * 1000).permille
}

/// Count and share of `total` per key, by count descending then key.
fn shares<K: AsRef<str>>(counts: BTreeMap<K, u64>, total: u64) -> Vec<CountShare> {
    let mut out: Vec<CountShare> = counts
        .into_iter()
        .map(|(key, count)| CountShare {
            key: key.as_ref().to_owned(),
            count,
            permille: rate(count, total).permille,
        })
        .collect();
    // Stable sort over key order: ties stay sorted by key.
    out.sort_by_key(|s| std::cmp::Reverse(s.count));
    out
}

/// The top-level category: the path before the first '/'.
fn top_category(path: &str) -> &str {
    let top = path.split('/').next().unwrap_or_default().trim();
    if top.is_empty() { "unspecified" } else { top }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_proto::v1::Kind;

    const FROM: i64 = 1_000_000;
    const TO: i64 = 2_000_000;

    fn r(numerator: u64, denominator: u64, permille: u32) -> Option<Rate> {
        Some(Rate {
            numerator,
            denominator,
            permille,
        })
    }

    fn cb(contacted: bool, resolution: Resolution, satisfaction: Satisfaction) -> CallbackResult {
        CallbackResult {
            at_ms: FROM + 500_000,
            contacted,
            resolution: resolution as i32,
            satisfaction: satisfaction as i32,
            note: String::new(),
            in_time: true,
        }
    }

    fn base(id: &str, kind: Kind, category: &str, status: Status) -> Ticket {
        Ticket {
            id: id.into(),
            region: "310114".into(),
            kind: kind as i32,
            category: category.into(),
            status: status as i32,
            accepted_at_ms: FROM + 1_000,
            ..Default::default()
        }
    }

    /// Dispatched to `unit`, signed and replied, with the given timeliness.
    fn handled(mut t: Ticket, unit: &str, signed_in_time: bool, replied_in_time: bool) -> Ticket {
        t.lead_unit = unit.into();
        t.first_dispatched_at_ms = FROM + 2_000;
        t.dispatched_at_ms = FROM + 2_000;
        t.signed_at_ms = FROM + 3_000;
        t.signed_in_time = signed_in_time;
        t.replied_at_ms = FROM + 4_000;
        t.replied_in_time = replied_in_time;
        t
    }

    /// The five tickets of the module's examples, plus two outside the period.
    fn sample() -> Vec<Ticket> {
        // 1. Answered at intake (直接答复).
        let mut answered = base("a", Kind::Consult, "社会保障/医疗保险", Status::Closed);
        answered.closure = Closure::Answered as i32;
        answered.accepted_at_ms = FROM; // the start is inclusive

        // 2. Dispatched, signed late, replied in time; satisfied callback.
        let mut late = handled(
            base("b", Kind::Complaint, "城乡建设/市容环境", Status::Closed),
            "城管局",
            false,
            true,
        );
        late.closure = Closure::Resolved as i32;
        late.callbacks = vec![cb(true, Resolution::Resolved, Satisfaction::Satisfied)];

        // 3. Basically satisfied, partly resolved.
        let mut basic = handled(
            base("c", Kind::Help, "城乡建设/物业管理", Status::Closed),
            "住建局",
            true,
            true,
        );
        basic.closure = Closure::Resolved as i32;
        basic.callbacks = vec![cb(true, Resolution::Partly, Satisfaction::Basic)];

        // 4. Returned once, replied late, reopened: the last callback (not
        //    contacted, unresolved, unsatisfied) supersedes the first.
        let mut reopened = handled(
            base("d", Kind::Complaint, "交通运输", Status::Handling),
            "城管局",
            true,
            false,
        );
        reopened.returns = 1;
        reopened.reopens = 1;
        reopened.callbacks = vec![
            cb(true, Resolution::Resolved, Satisfaction::Satisfied),
            cb(false, Resolution::Unresolved, Satisfaction::Unsatisfied),
        ];

        // 5. Merged into ticket 4: counted in the volumes, in no rate.
        let mut merged = handled(
            base("e", Kind::Complaint, "交通运输/道路", Status::Merged),
            "城管局",
            true,
            true,
        );
        merged.closure = Closure::Merged as i32;
        merged.master_id = "d".into();
        merged.callbacks = vec![cb(true, Resolution::Resolved, Satisfaction::Satisfied)];

        // Outside [FROM, TO): the end is exclusive.
        let mut before = answered.clone();
        before.id = "before".into();
        before.accepted_at_ms = FROM - 1;
        let mut after = late.clone();
        after.id = "after".into();
        after.accepted_at_ms = TO;

        vec![before, answered, late, basic, reopened, merged, after]
    }

    fn share(key: &str, count: u64, permille: u32) -> CountShare {
        CountShare {
            key: key.into(),
            count,
            permille,
        }
    }

    #[test]
    fn region_rates_are_exact() {
        let tickets = sample();
        let rep = report("310114", &tickets, FROM, TO, &KpiWeights::default());
        assert_eq!((rep.from_ms, rep.to_ms, rep.total), (FROM, TO, 5));
        let k = rep.region.unwrap();
        assert_eq!(k.scope, "region 310114");
        assert_eq!(k.tickets, 4, "the merged ticket is not in the rates");
        // Last callbacks: b contacted, c contacted, d not.
        assert_eq!(k.response, r(2, 3, 667));
        // b resolved; c partly (= not resolved); d unresolved.
        assert_eq!(k.resolution, r(1, 3, 333));
        // b satisfied (1000) + c basic (600) over 3 rated.
        assert_eq!(k.satisfaction, r(1600, 3000, 533));
        // (667·300 + 333·350 + 533·350) / 1000 = 503.2
        assert_eq!(k.composite_permille, 503);
        // b signed late; c, d in time.
        assert_eq!(k.on_time_sign, r(2, 3, 667));
        // d replied late.
        assert_eq!(k.on_time_reply, r(2, 3, 667));
        assert_eq!(k.returns, r(1, 3, 333));
        assert_eq!(k.reopens, r(1, 3, 333));
        assert_eq!(k.direct_answer, r(1, 4, 250));
    }

    #[test]
    fn units_are_sorted_by_name_with_their_own_rates() {
        let tickets = sample();
        let rep = report("310114", &tickets, FROM, TO, &KpiWeights::default());
        let scopes: Vec<&str> = rep.units.iter().map(|u| u.scope.as_str()).collect();
        // "住" (U+4F4F) sorts before "城" (U+57CE).
        assert_eq!(scopes, ["unit 住建局", "unit 城管局"]);

        let zj = &rep.units[0];
        assert_eq!(zj.tickets, 1);
        assert_eq!(zj.response, r(1, 1, 1000));
        assert_eq!(zj.resolution, r(0, 1, 0));
        assert_eq!(zj.satisfaction, r(600, 1000, 600));
        // (1000·300 + 0·350 + 600·350) / 1000 = 510
        assert_eq!(zj.composite_permille, 510);
        assert_eq!(zj.on_time_sign, r(1, 1, 1000));
        assert_eq!(zj.on_time_reply, r(1, 1, 1000));
        assert_eq!(zj.returns, r(0, 1, 0));
        assert_eq!(zj.reopens, r(0, 1, 0));
        assert_eq!(zj.direct_answer, r(0, 1, 0));

        let cg = &rep.units[1];
        assert_eq!(cg.tickets, 2, "b and d; the merged e is not counted");
        assert_eq!(cg.response, r(1, 2, 500));
        assert_eq!(cg.resolution, r(1, 2, 500));
        assert_eq!(cg.satisfaction, r(1000, 2000, 500));
        assert_eq!(cg.composite_permille, 500);
        assert_eq!(cg.on_time_sign, r(1, 2, 500));
        assert_eq!(cg.on_time_reply, r(1, 2, 500));
        assert_eq!(cg.returns, r(1, 2, 500));
        assert_eq!(cg.reopens, r(1, 2, 500));
        assert_eq!(cg.direct_answer, r(0, 2, 0));
    }

    #[test]
    fn volumes_count_every_ticket_including_merged() {
        let tickets = sample();
        let rep = report("310114", &tickets, FROM, TO, &KpiWeights::default());
        assert_eq!(
            rep.by_kind,
            [
                share("complaint", 3, 600),
                share("consult", 1, 200),
                share("help", 1, 200),
            ]
        );
        // Ties by key: "交" (U+4EA4) before "城" (U+57CE).
        assert_eq!(
            rep.by_category,
            [
                share("交通运输", 2, 400),
                share("城乡建设", 2, 400),
                share("社会保障", 1, 200),
            ]
        );
        assert_eq!(
            rep.by_status,
            [
                share("closed", 3, 600),
                share("handling", 1, 200),
                share("merged", 1, 200),
            ]
        );
    }

    /// By district: of the place a ticket is about (a street code counts in
    /// its district) when it lies in the group's region, else of the
    /// accepting center; a city group's tickets about districts without a
    /// group of their own show each district. Largest first.
    #[test]
    fn volumes_by_district_of_the_place() {
        let at = |id: &str, region: &str, place: Option<&str>| {
            let mut t = base(id, Kind::Complaint, "城乡建设", Status::Accepted);
            t.region = region.into();
            t.location = place.map(|code| hotline_proto::v1::Location {
                code: code.into(),
                ..Default::default()
            });
            t
        };
        let tickets = [
            at("1", "3101", Some("310104003")), // 徐汇 天平路街道
            at("2", "3101", Some("310104012")),
            at("3", "3101", Some("310106")), // 静安
            at("4", "3101", None),           // the city center's own
            at("5", "3101", Some("")),
            // A place outside the group's region (no region group serves
            // it): counted where it was accepted.
            at("6", "310104", Some("110101001")),
        ];
        let rep = report("3101", &tickets, FROM, TO, &KpiWeights::default());
        assert_eq!(
            rep.by_district,
            [
                share("310104", 3, 500),
                share("3101", 2, 333),
                share("310106", 1, 167),
            ]
        );
    }

    /// Stubs of transferred tickets are counted where the tickets are owned;
    /// those not yet confirmed delivered are in transit, apart from the total.
    #[test]
    fn stubs_are_not_counted_and_undelivered_ones_are_in_transit() {
        let mut tickets = sample();
        let base = report("310114", &tickets, FROM, TO, &KpiWeights::default());
        assert_eq!(base.in_transit, 0);
        let stub = |state: TransferState| Ticket {
            id: format!("310114-20201002-9{}", state as i32),
            accepted_at_ms: FROM + 1,
            status: Status::Transferred as i32,
            transfer_state: state as i32,
            ..Ticket::default()
        };
        tickets.extend([
            stub(TransferState::Pending),
            stub(TransferState::Forwarded),
            stub(TransferState::Delivered),
        ]);
        let rep = report("310114", &tickets, FROM, TO, &KpiWeights::default());
        assert_eq!(rep.total, base.total);
        assert_eq!(rep.by_status, base.by_status);
        assert_eq!(rep.in_transit, 2);
    }

    #[test]
    fn input_order_does_not_matter() {
        let tickets = sample();
        let w = KpiWeights::default();
        let forward = report("310114", &tickets, FROM, TO, &w);
        let backward = report("310114", tickets.iter().rev(), FROM, TO, &w);
        assert_eq!(forward, backward);
    }

    #[test]
    fn basic_weight_is_configurable() {
        let tickets = sample();
        let none = KpiWeights::default().with_basic_permille(0);
        assert_eq!(none, KpiWeights::default(), "0 keeps the policy default");

        let full = KpiWeights::default().with_basic_permille(1000);
        let k = report("310114", &tickets, FROM, TO, &full).region.unwrap();
        assert_eq!(k.satisfaction, r(2000, 3000, 667));

        // A weight above 1000 is capped: basic never beats satisfied.
        let over = KpiWeights::default().with_basic_permille(5000);
        let k = report("310114", &tickets, FROM, TO, &over).region.unwrap();
        assert_eq!(k.satisfaction, r(2000, 3000, 667));

        let zero = KpiWeights {
            basic_permille: 0,
            ..KpiWeights::default()
        };
        let k = report("310114", &tickets, FROM, TO, &zero).region.unwrap();
        assert_eq!(k.satisfaction, r(1000, 3000, 333));
    }

    #[test]
    fn composite_weights() {
        let tickets = sample();
        let only_response = KpiWeights {
            basic_permille: 600,
            response_permille: 1,
            resolution_permille: 0,
            satisfaction_permille: 0,
        };
        let k = report("310114", &tickets, FROM, TO, &only_response)
            .region
            .unwrap();
        assert_eq!(k.composite_permille, 667);
        let no_weights = KpiWeights {
            basic_permille: 600,
            response_permille: 0,
            resolution_permille: 0,
            satisfaction_permille: 0,
        };
        let k = report("310114", &tickets, FROM, TO, &no_weights)
            .region
            .unwrap();
        assert_eq!(k.composite_permille, 0);
    }

    #[test]
    fn rate_rounds_half_up() {
        assert_eq!(
            rate(1, 3),
            Rate {
                numerator: 1,
                denominator: 3,
                permille: 333
            }
        );
        assert_eq!(rate(2, 3).permille, 667);
        assert_eq!(rate(1, 8).permille, 125);
        assert_eq!(rate(1, 2000).permille, 1, "0.5‰ rounds up");
        assert_eq!(rate(3, 2000).permille, 2, "1.5‰ rounds up");
        assert_eq!(rate(1, 2001).permille, 0, "0.49975‰ rounds down");
        assert_eq!(rate(1999, 2000).permille, 1000, "999.5‰ rounds up");
        assert_eq!(rate(7, 7).permille, 1000);
        assert_eq!(rate(0, 5).permille, 0);
        assert_eq!(
            rate(0, 0),
            Rate {
                numerator: 0,
                denominator: 0,
                permille: 0
            }
        );
        assert_eq!(rate(5, 0).permille, 0);
        assert_eq!(rate(u64::MAX, u64::MAX).permille, 1000, "no overflow");
    }

    #[test]
    fn empty_input_gives_zero_rates() {
        let zero = r(0, 0, 0);
        for tickets in [Vec::new(), sample()] {
            // The second period holds none of the sample's tickets.
            let rep = report("310114", &tickets, TO + 1, TO + 2, &KpiWeights::default());
            assert_eq!(rep.total, 0);
            assert!(rep.units.is_empty());
            assert!(rep.by_kind.is_empty() && rep.by_category.is_empty());
            assert!(rep.by_status.is_empty());
            let k = rep.region.unwrap();
            assert_eq!((k.scope.as_str(), k.tickets), ("region 310114", 0));
            for rt in [
                k.response,
                k.resolution,
                k.satisfaction,
                k.on_time_sign,
                k.on_time_reply,
                k.returns,
                k.reopens,
                k.direct_answer,
            ] {
                assert_eq!(rt, zero);
            }
            assert_eq!(k.composite_permille, 0);
        }
    }

    #[test]
    fn missing_fields_are_keyed_unspecified() {
        let mut t = base("x", Kind::Unspecified, "", Status::Unspecified);
        t.callbacks = vec![cb(
            false,
            Resolution::Unspecified,
            Satisfaction::Unspecified,
        )];
        let rep = report("310114", [&t], FROM, TO, &KpiWeights::default());
        assert_eq!(rep.by_kind, [share("unspecified", 1, 1000)]);
        assert_eq!(rep.by_category, [share("unspecified", 1, 1000)]);
        assert_eq!(rep.by_status, [share("unspecified", 1, 1000)]);
        let k = rep.region.unwrap();
        // A callback that reached nobody: counts for response, rates nothing.
        assert_eq!(k.response, r(0, 1, 0));
        assert_eq!(k.resolution, r(0, 0, 0));
        assert_eq!(k.satisfaction, r(0, 0, 0));
        assert!(rep.units.is_empty(), "no lead unit, no unit row");
    }
}
