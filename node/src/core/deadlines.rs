//! Deadline rules (办理时限) per (kind, category, priority), shipped as data.
//!
//! No national deadline exists; provinces and cities set their own (see
//! `node/data/deadlines.toml` for the defaults and where each figure comes
//! from). The rules are an ordered list, first match wins, ending in a
//! catch-all, so an operator can read the file top to bottom the way the
//! code applies it. Spans are hours on the wall clock (24×7, as emergency
//! and utility handling is) or working days on the [`Calendar`].
//!
//! Sans-IO and deterministic: instants are Unix ms given by the caller, all
//! arithmetic is integer (shares are per-mille).

use serde::Deserialize;
use toml::Spanned;

use super::calendar::Calendar;

/// A length of time a step may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// Wall-clock hours, counted 24×7 from the start instant.
    Hours(u32),
    /// Working days after the start date (see [`Calendar::add_working_days`]).
    WorkingDays(u32),
}

/// One line of the rule table. `None` fields match anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// consult | help | complaint | report | suggestion | praise
    pub kind: Option<String>,
    /// A category path prefix on segment boundaries: "水电气热" matches
    /// "水电气热" and "水电气热/供水", not "水电气热站".
    pub category: Option<String>,
    /// normal | urgent | emergency
    pub priority: Option<String>,
    /// Time to handle (办理) once signed for.
    pub handle: Span,
    /// Where the figure comes from.
    pub note: String,
}

/// The deadline policy: handling rules plus the other clocks of a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlineRules {
    /// In file order; the first whose present fields all match applies.
    pub rules: Vec<Rule>,
    /// Time a unit has to sign for (签收) a dispatched ticket.
    pub sign: Span,
    /// Working days added to the handling deadline per approved extension (延期).
    pub extension_days: u32,
    /// How many extensions may be approved for one ticket.
    pub max_extensions: u32,
    /// Yellow once this share (per mille) of a span has elapsed, e.g. 800.
    pub warn_permille: u32,
    /// Time the centre has to call back (回访) after the unit's reply.
    pub callback: Span,
}

/// The ticket kinds a rule may name (as in `tickets::kind_name`).
pub const KINDS: [&str; 6] = [
    "consult",
    "help",
    "complaint",
    "report",
    "suggestion",
    "praise",
];
/// The priorities a rule may name.
pub const PRIORITIES: [&str; 3] = ["normal", "urgent", "emergency"];

/// Bounds that keep every deadline computation short and in range.
pub const MAX_HOURS: u32 = 24 * 366;
pub const MAX_WORKING_DAYS: u32 = 366;
pub const MAX_EXTENSIONS: u32 = 10;

/// Used only if no rule matches, which a parsed table cannot produce (it
/// ends in a catch-all); a hand-built table without one gets this.
const FALLBACK_HANDLE: Span = Span::WorkingDays(5);

impl DeadlineRules {
    pub const BUILTIN_TOML: &'static str = include_str!("../../data/deadlines.toml");

    /// The defaults shipped in `node/data/deadlines.toml`.
    pub fn builtin() -> DeadlineRules {
        DeadlineRules::parse(Self::BUILTIN_TOML)
            .unwrap_or_else(|e| panic!("builtin deadlines.toml is invalid: {e}"))
    }

    /// Parses and validates a rules file. Rejected, with the line and the
    /// reason: unknown keys, a kind or priority outside the lists above, a
    /// malformed category prefix, a span that is zero, too long, or gives
    /// both or neither of `hours` and `working_days`, a missing catch-all
    /// (a rule with no kind, category or priority) as the last rule, any
    /// rule after a catch-all (it could never match), `warn_permille`
    /// outside 1..=999, and `extension_days` of 0 while extensions are allowed.
    pub fn parse(text: &str) -> Result<DeadlineRules, String> {
        let raw: RawRules = toml::from_str(text).map_err(|e| format!("deadlines: {e}"))?;
        let sign = raw
            .sign
            .get_ref()
            .to_span(&format!("`sign` ({})", line(text, raw.sign.span())))?;
        let callback = raw
            .callback
            .get_ref()
            .to_span(&format!("`callback` ({})", line(text, raw.callback.span())))?;

        let warn_permille = *raw.warn_permille.get_ref();
        if !(1..=999).contains(&warn_permille) {
            return Err(format!(
                "deadlines {}: `warn_permille` = {warn_permille} must be in 1..=999",
                line(text, raw.warn_permille.span())
            ));
        }
        let max_extensions = *raw.max_extensions.get_ref();
        if max_extensions > MAX_EXTENSIONS {
            return Err(format!(
                "deadlines {}: `max_extensions` = {max_extensions} is over the limit of {MAX_EXTENSIONS}",
                line(text, raw.max_extensions.span())
            ));
        }
        let extension_days = *raw.extension_days.get_ref();
        if extension_days > MAX_WORKING_DAYS || (extension_days == 0 && max_extensions > 0) {
            return Err(format!(
                "deadlines {}: `extension_days` = {extension_days} must be in 1..={MAX_WORKING_DAYS} \
                 while extensions are allowed",
                line(text, raw.extension_days.span())
            ));
        }

        if raw.rule.is_empty() {
            return Err("deadlines: no [[rule]]; at least a final catch-all rule is needed".into());
        }
        let mut rules = Vec::with_capacity(raw.rule.len());
        let mut catch_all_at: Option<String> = None;
        for (i, r) in raw.rule.iter().enumerate() {
            let at = format!("rule #{} ({})", i + 1, line(text, r.span()));
            if let Some(prev) = &catch_all_at {
                return Err(format!(
                    "deadlines {at}: comes after the catch-all {prev} and could never match"
                ));
            }
            let rule = r.get_ref().to_rule(&at)?;
            if rule.kind.is_none() && rule.category.is_none() && rule.priority.is_none() {
                catch_all_at = Some(at);
            }
            rules.push(rule);
        }
        if catch_all_at.is_none() {
            return Err(
                "deadlines: the last [[rule]] must be a catch-all (no kind, category or priority), \
                 so that every ticket gets a deadline"
                    .into(),
            );
        }
        Ok(DeadlineRules {
            rules,
            sign,
            extension_days,
            max_extensions,
            warn_permille,
            callback,
        })
    }

    /// The handling span of the first rule, in file order, whose present
    /// fields all match. `kind` and `priority` are the lowercase identifiers;
    /// `category` is the ticket's category path ("城乡建设/市容环境").
    pub fn handling_span(&self, kind: &str, category: &str, priority: &str) -> Span {
        self.rules
            .iter()
            .find(|r| {
                r.kind.as_deref().is_none_or(|k| k == kind)
                    && r.priority.as_deref().is_none_or(|p| p == priority)
                    && r.category
                        .as_deref()
                        .is_none_or(|c| category_matches(c, category))
            })
            .map_or(FALLBACK_HANDLE, |r| r.handle)
    }

    /// The deadline of `span` started at `from_ms`: hours are wall-clock
    /// (24×7), working days go through [`Calendar::add_working_days`] (an
    /// exclusive bound at 00:00 CST after the last working day).
    pub fn due_ms(cal: &Calendar, span: Span, from_ms: i64) -> i64 {
        match span {
            Span::Hours(h) => from_ms.saturating_add(i64::from(h) * 3_600_000),
            Span::WorkingDays(n) => cal.add_working_days(from_ms, n),
        }
    }

    /// When the yellow warning starts: `warn_permille`/1000 of the way from
    /// `start_ms` to `due_ms` (integer math, rounded toward `start_ms`).
    pub fn warn_ms(&self, start_ms: i64, due_ms: i64) -> i64 {
        let span = i128::from(due_ms) - i128::from(start_ms);
        let offset = span * i128::from(self.warn_permille) / 1000;
        // |offset| < |span| ≤ 2^64, and start + offset lies between start and
        // due, so it fits in i64.
        (i128::from(start_ms) + offset) as i64
    }
}

/// Whether a rule's category prefix covers a ticket's category path.
fn category_matches(prefix: &str, category: &str) -> bool {
    match category.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    sign: Spanned<RawSpan>,
    callback: Spanned<RawSpan>,
    extension_days: Spanned<u32>,
    max_extensions: Spanned<u32>,
    warn_permille: Spanned<u32>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpan {
    hours: Option<u32>,
    working_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    kind: Option<String>,
    category: Option<String>,
    priority: Option<String>,
    hours: Option<u32>,
    working_days: Option<u32>,
    #[serde(default)]
    note: String,
}

impl RawSpan {
    /// `at` says where, e.g. "[sign] (line 3)".
    fn to_span(&self, at: &str) -> Result<Span, String> {
        let at = || format!("deadlines {at}");
        match (self.hours, self.working_days) {
            (Some(h), None) if (1..=MAX_HOURS).contains(&h) => Ok(Span::Hours(h)),
            (None, Some(d)) if (1..=MAX_WORKING_DAYS).contains(&d) => Ok(Span::WorkingDays(d)),
            (Some(h), None) => Err(format!(
                "{}: `hours` = {h} must be in 1..={MAX_HOURS}",
                at()
            )),
            (None, Some(d)) => Err(format!(
                "{}: `working_days` = {d} must be in 1..={MAX_WORKING_DAYS}",
                at()
            )),
            _ => Err(format!(
                "{}: give exactly one of `hours` or `working_days`",
                at()
            )),
        }
    }
}

impl RawRule {
    fn to_rule(&self, at: &str) -> Result<Rule, String> {
        if let Some(k) = &self.kind
            && !KINDS.contains(&k.as_str())
        {
            return Err(format!(
                "deadlines {at}: kind \"{k}\" is not one of {}",
                KINDS.join(", ")
            ));
        }
        if let Some(p) = &self.priority
            && !PRIORITIES.contains(&p.as_str())
        {
            return Err(format!(
                "deadlines {at}: priority \"{p}\" is not one of {}",
                PRIORITIES.join(", ")
            ));
        }
        if let Some(c) = &self.category {
            let segments: Vec<&str> = c.split('/').collect();
            if segments.iter().any(|s| s.trim().is_empty()) || segments.len() > 3 {
                return Err(format!(
                    "deadlines {at}: category \"{c}\" must be a path of 1 to 3 non-empty \
                     segments separated by '/'"
                ));
            }
        }
        let raw_span = RawSpan {
            hours: self.hours,
            working_days: self.working_days,
        };
        let handle = raw_span.to_span(at)?;
        Ok(Rule {
            kind: self.kind.clone(),
            category: self.category.clone(),
            priority: self.priority.clone(),
            handle,
            note: self.note.clone(),
        })
    }
}

/// "line N" for a byte span of `text`.
fn line(text: &str, span: std::ops::Range<usize>) -> String {
    let end = span.start.min(text.len());
    let n = text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    format!("line {n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn builtin_defaults() {
        let r = DeadlineRules::builtin();
        assert_eq!(r.sign, Span::WorkingDays(1));
        assert_eq!(r.callback, Span::WorkingDays(2));
        assert_eq!(r.extension_days, 15);
        assert_eq!(r.max_extensions, 1);
        assert_eq!(r.warn_permille, 800);
        assert!(
            r.rules.iter().all(|x| !x.note.trim().is_empty()),
            "every rule cites a source"
        );
        let last = r.rules.last().unwrap();
        assert!(last.kind.is_none() && last.category.is_none() && last.priority.is_none());

        let s = |k, c, p| r.handling_span(k, c, p);
        assert_eq!(
            s("complaint", "城乡建设/市容环境", "emergency"),
            Span::Hours(2)
        );
        assert_eq!(
            s("consult", "水电气热/供水/停水", "normal"),
            Span::Hours(24)
        );
        assert_eq!(s("consult", "水电气热", "urgent"), Span::Hours(24));
        assert_eq!(s("complaint", "城乡建设", "urgent"), Span::WorkingDays(1));
        assert_eq!(s("consult", "城乡建设", "normal"), Span::WorkingDays(3));
        assert_eq!(s("help", "民政", "normal"), Span::WorkingDays(5));
        assert_eq!(s("suggestion", "民政", "normal"), Span::WorkingDays(7));
        assert_eq!(s("complaint", "民政", "normal"), Span::WorkingDays(10));
        assert_eq!(
            s("report", "政法/社会治安", "normal"),
            Span::WorkingDays(15)
        );
        assert_eq!(s("praise", "民政", "normal"), Span::WorkingDays(5));
        assert_eq!(s("unspecified", "", ""), Span::WorkingDays(5));
        // Prefixes match on segment boundaries only.
        assert_eq!(
            s("complaint", "水电气热站", "normal"),
            Span::WorkingDays(10)
        );
    }

    const TAIL: &str = "sign = { working_days = 1 }\ncallback = { working_days = 2 }\n\
                        extension_days = 15\nmax_extensions = 1\nwarn_permille = 800\n";

    fn rules(body: &str) -> Result<DeadlineRules, String> {
        DeadlineRules::parse(&format!("{TAIL}{body}"))
    }

    #[test]
    fn first_matching_rule_in_file_order_wins() {
        let r = rules(
            "[[rule]]\nkind = \"complaint\"\nworking_days = 10\n\
             [[rule]]\ncategory = \"水电气热\"\nhours = 24\n\
             [[rule]]\nkind = \"complaint\"\ncategory = \"城乡建设/物业管理\"\npriority = \"normal\"\nworking_days = 3\n\
             [[rule]]\nworking_days = 5\nnote = \"catch-all\"\n",
        )
        .unwrap();
        assert_eq!(r.rules.len(), 4);
        // The kind rule comes first, so a utility complaint gets 10 days.
        assert_eq!(
            r.handling_span("complaint", "水电气热/供水", "normal"),
            Span::WorkingDays(10)
        );
        assert_eq!(
            r.handling_span("help", "水电气热/供水", "normal"),
            Span::Hours(24)
        );
        // The all-three rule is shadowed by the earlier kind rule.
        assert_eq!(
            r.handling_span("complaint", "城乡建设/物业管理", "normal"),
            Span::WorkingDays(10)
        );
        assert_eq!(
            r.handling_span("help", "城乡建设", "normal"),
            Span::WorkingDays(5)
        );
    }

    #[test]
    fn all_present_fields_must_match() {
        let r = rules(
            "[[rule]]\nkind = \"help\"\ncategory = \"民政/社会救助\"\npriority = \"urgent\"\nhours = 4\n\
             [[rule]]\nworking_days = 5\n",
        )
        .unwrap();
        assert_eq!(
            r.handling_span("help", "民政/社会救助/低保", "urgent"),
            Span::Hours(4)
        );
        assert_eq!(
            r.handling_span("help", "民政/社会救助", "normal"),
            Span::WorkingDays(5)
        );
        assert_eq!(
            r.handling_span("consult", "民政/社会救助", "urgent"),
            Span::WorkingDays(5)
        );
        assert_eq!(
            r.handling_span("help", "民政", "urgent"),
            Span::WorkingDays(5)
        );
    }

    #[test]
    fn due_and_warn() {
        let cal = Calendar::builtin();
        let at = Calendar::cst_midnight_ms(date(2026, 9, 30)) + 10 * 3_600_000;
        assert_eq!(
            DeadlineRules::due_ms(&cal, Span::Hours(2), at),
            at + 2 * 3_600_000
        );
        // Hours run through holidays.
        assert_eq!(
            DeadlineRules::due_ms(&cal, Span::Hours(24), at),
            at + 24 * 3_600_000
        );
        assert_eq!(
            DeadlineRules::due_ms(&cal, Span::WorkingDays(3), at),
            Calendar::cst_midnight_ms(date(2026, 10, 11))
        );
        let r = DeadlineRules::builtin();
        assert_eq!(r.warn_ms(1000, 2000), 1800);
        assert_eq!(r.warn_ms(0, 7), 5); // 5.6, rounded toward the start
        assert_eq!(r.warn_ms(5, 5), 5);
        assert_eq!(
            r.warn_ms(i64::MIN, i64::MAX),
            (i128::from(i64::MIN) + i128::from(u64::MAX) * 800 / 1000) as i64
        );
    }

    #[test]
    fn parse_rejects_bad_files_naming_the_problem() {
        let catch_all = "[[rule]]\nworking_days = 5\n";
        let e = |body: &str| rules(body).unwrap_err();

        let m = e(&format!(
            "[[rule]]\nkind = \"投诉\"\nworking_days = 5\n{catch_all}"
        ));
        assert!(m.contains("rule #1") && m.contains("kind \"投诉\""), "{m}");
        let m = e(&format!(
            "[[rule]]\npriority = \"high\"\nworking_days = 5\n{catch_all}"
        ));
        assert!(m.contains("priority \"high\""), "{m}");
        let m = e(&format!(
            "[[rule]]\nkind = \"help\"\nworking_days = 0\n{catch_all}"
        ));
        assert!(m.contains("`working_days` = 0"), "{m}");
        let m = e(&format!(
            "[[rule]]\nkind = \"help\"\nhours = 0\n{catch_all}"
        ));
        assert!(m.contains("`hours` = 0"), "{m}");
        let m = e(&format!(
            "[[rule]]\nkind = \"help\"\nhours = 2\nworking_days = 1\n{catch_all}"
        ));
        assert!(m.contains("exactly one"), "{m}");
        let m = e(&format!("[[rule]]\nkind = \"help\"\n{catch_all}"));
        assert!(m.contains("exactly one") && m.contains("rule #1"), "{m}");
        let m = e(&format!(
            "[[rule]]\ncategory = \"a//b\"\nhours = 2\n{catch_all}"
        ));
        assert!(m.contains("category \"a//b\""), "{m}");
        let m = e("[[rule]]\nkind = \"help\"\nworking_days = 5\n");
        assert!(m.contains("catch-all"), "{m}");
        let m = e(&format!(
            "{catch_all}[[rule]]\nkind = \"help\"\nworking_days = 5\n"
        ));
        assert!(m.contains("rule #2") && m.contains("never match"), "{m}");
        let m = e("");
        assert!(m.contains("no [[rule]]"), "{m}");
        let m = e(&format!(
            "[[rule]]\nkinds = \"help\"\nworking_days = 5\n{catch_all}"
        ));
        assert!(m.contains("kinds"), "{m}");

        let head = |k: &str, v: &str| TAIL.replace(k, v);
        let p = |t: String| DeadlineRules::parse(&format!("{t}{catch_all}")).unwrap_err();
        let m = p(head("warn_permille = 800", "warn_permille = 1000"));
        assert!(
            m.contains("`warn_permille` = 1000") && m.contains("line 5"),
            "{m}"
        );
        let m = p(head("warn_permille = 800", "warn_permille = 0"));
        assert!(m.contains("`warn_permille` = 0"), "{m}");
        let m = p(head("sign = { working_days = 1 }", "sign = { }"));
        assert!(
            m.contains("`sign` (line 1)") && m.contains("exactly one"),
            "{m}"
        );
        let m = p(head(
            "callback = { working_days = 2 }",
            "callback = { days = 2 }",
        ));
        assert!(m.contains("days"), "{m}");
        let m = p(head("extension_days = 15", "extension_days = 0"));
        assert!(m.contains("`extension_days` = 0"), "{m}");
        let m = p(head("extension_days = 15", "extension_days = -1"));
        assert!(m.contains("extension_days") || m.contains("-1"), "{m}");
        let m = p(head("max_extensions = 1", "max_extensions = 11"));
        assert!(m.contains("`max_extensions` = 11"), "{m}");
        // No extensions allowed: extension_days may be 0.
        let t = head("extension_days = 15", "extension_days = 0")
            .replace("max_extensions = 1", "max_extensions = 0");
        assert!(DeadlineRules::parse(&format!("{t}{catch_all}")).is_ok());
    }
}
