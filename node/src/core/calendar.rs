//! China's statutory holidays and make-up workdays (放假调休), in China
//! Standard Time (UTC+8, no DST), for working-day deadlines.
//!
//! The State Council General Office publishes each year's schedule in
//! November of the year before, so a year is data, not code: one TOML file
//! per year (`node/data/calendar/<year>.toml`, format in `node/data/README.md`).
//! The files for the years the binary was built with are embedded; a new year
//! is parsed from its text with [`Calendar::parse_year`] and added with
//! [`Calendar::insert_year`], no rebuild needed.
//!
//! Sans-IO and deterministic like the rest of `core`: nothing here reads a
//! clock or a file, instants are Unix milliseconds given by the caller, all
//! arithmetic is on integers and all containers are ordered.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::{Date, Weekday};
use serde::Deserialize;
use toml::Spanned;

/// China Standard Time is UTC+8 all year.
pub const CST_OFFSET_MS: i64 = 8 * 3600 * 1000;

const DAY_MS: i64 = 86_400_000;

/// The holidays and make-up workdays of one year, as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalendarYear {
    pub year: i16,
    /// Days off (including the weekend days inside a holiday block).
    pub holidays: BTreeSet<Date>,
    /// Make-up workdays (调休上班): Saturdays or Sundays that are worked.
    pub workdays: BTreeSet<Date>,
    /// Where the dates come from (the notice and its publication date).
    pub source: String,
}

/// The loaded years, by year. A year that is not loaded falls back to
/// "Monday to Friday are workdays" (see [`Calendar::is_workday`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calendar {
    years: BTreeMap<i16, CalendarYear>,
}

/// The embedded year files, in year order.
const BUILTIN: [(i16, &str); 2] = [
    (2025, include_str!("../../data/calendar/2025.toml")),
    (2026, include_str!("../../data/calendar/2026.toml")),
];

impl Calendar {
    /// The years embedded at build time (2025 and 2026).
    pub fn builtin() -> Calendar {
        let mut cal = Calendar::default();
        for (year, text) in BUILTIN {
            let y = Calendar::parse_year(text)
                .unwrap_or_else(|e| panic!("builtin calendar {year} is invalid: {e}"));
            assert_eq!(
                y.year, year,
                "builtin calendar file for {year} names another year"
            );
            cal.insert_year(y);
        }
        cal
    }

    /// The embedded TOML texts, by year (what `builtin` parses).
    pub fn builtin_texts() -> Vec<(i16, &'static str)> {
        BUILTIN.to_vec()
    }

    /// Parses one year's file. Rejected, with the line and the reason:
    /// TOML syntax errors and unknown keys, malformed dates, dates outside
    /// the file's year, `from` after `to`, a date listed twice, a date that
    /// is both a holiday and a workday, and a make-up "workday" that is not a
    /// Saturday or Sunday (weekdays are workdays anyway, so it is a typo).
    /// Holidays may fall on any day of the week.
    ///
    /// Dates may be TOML dates (`2026-10-01`) or strings (`"2026-10-01"`).
    /// A holiday block that starts in the previous year (it has happened:
    /// 2019's 元旦 began on 2018-12-30) is written into the previous year's file.
    pub fn parse_year(text: &str) -> Result<CalendarYear, String> {
        let raw: RawYear = toml::from_str(text).map_err(|e| format!("calendar: {e}"))?;
        let year_value = *raw.year.get_ref();
        let year = i16::try_from(year_value)
            .ok()
            .filter(|y| (1970..=9999).contains(y))
            .ok_or_else(|| {
                format!(
                    "calendar {}: `year` = {year_value} is not a year between 1970 and 9999",
                    line(text, raw.year.span())
                )
            })?;
        if raw.source.get_ref().trim().is_empty() {
            return Err(format!(
                "calendar {}: `source` is empty; say which notice the dates come from",
                line(text, raw.source.span())
            ));
        }
        let mut holidays = BTreeSet::new();
        let mut workdays = BTreeSet::new();
        for h in &raw.holiday {
            let name = h.name.get_ref();
            if name.trim().is_empty() {
                return Err(format!(
                    "calendar {}: holiday `name` is empty",
                    line(text, h.name.span())
                ));
            }
            let from = date_in_year(text, &h.from, year, name, "from")?;
            let to = date_in_year(text, &h.to, year, name, "to")?;
            if from > to {
                return Err(format!(
                    "calendar {}: holiday \"{name}\": `from` {from} is after `to` {to}",
                    line(text, h.to.span())
                ));
            }
            let mut d = from;
            loop {
                if workdays.contains(&d) {
                    return Err(both(text, h.from.span(), d));
                }
                if !holidays.insert(d) {
                    return Err(format!(
                        "calendar {}: holiday \"{name}\": {d} is already a holiday of an earlier entry",
                        line(text, h.from.span())
                    ));
                }
                if d == to {
                    break;
                }
                d = d.tomorrow().map_err(|e| format!("calendar: {e}"))?;
            }
            for w in &h.workdays {
                let d = date_in_year(text, w, year, name, "workdays")?;
                if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
                    return Err(format!(
                        "calendar {}: holiday \"{name}\": make-up workday {d} is a {:?}, \
                         not a Saturday or Sunday (weekdays are workdays anyway)",
                        line(text, w.span()),
                        d.weekday()
                    ));
                }
                if holidays.contains(&d) {
                    return Err(both(text, w.span(), d));
                }
                if !workdays.insert(d) {
                    return Err(format!(
                        "calendar {}: holiday \"{name}\": workday {d} is listed twice",
                        line(text, w.span())
                    ));
                }
            }
        }
        Ok(CalendarYear {
            year,
            holidays,
            workdays,
            source: raw.source.into_inner(),
        })
    }

    /// Adds a year, replacing any year already loaded with the same number.
    pub fn insert_year(&mut self, y: CalendarYear) {
        self.years.insert(y.year, y);
    }

    /// The loaded years, ascending.
    pub fn years(&self) -> Vec<i16> {
        self.years.keys().copied().collect()
    }

    /// The loaded data of one year, if any.
    pub fn year(&self, year: i16) -> Option<&CalendarYear> {
        self.years.get(&year)
    }

    /// Whether `d` is a working day. In a loaded year: holidays are off,
    /// make-up workdays are worked, otherwise Monday–Friday. In a year that
    /// is not loaded the documented fallback is plain Monday–Friday, so a
    /// deadline running into next year before its schedule is published may
    /// land early, never late (holidays only add days).
    pub fn is_workday(&self, d: Date) -> bool {
        let weekday = !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday);
        match self.years.get(&d.year()) {
            Some(y) if y.holidays.contains(&d) => false,
            Some(y) if y.workdays.contains(&d) => true,
            _ => weekday,
        }
    }

    /// The CST calendar date of a Unix-ms instant (clamped to jiff's date
    /// range, -9999..=9999, for absurd inputs).
    pub fn cst_date(at_ms: i64) -> Date {
        date_of_day(at_ms.saturating_add(CST_OFFSET_MS).div_euclid(DAY_MS))
    }

    /// Unix ms of 00:00 CST on `d`.
    pub fn cst_midnight_ms(d: Date) -> i64 {
        midnight_of_day(day_of_date(d))
    }

    /// Deadline of `n` working days counted from the next working day after
    /// the CST date of `from_ms`: the end of the n-th such working day,
    /// expressed as 00:00 CST of the following calendar day (an exclusive
    /// bound: the deadline is met iff the event's `at_ms` is below it).
    /// `n == 0` gives the end of the from-date itself.
    ///
    /// Example: accepted on 2026-09-30 (any time), 3 working days → 10-08,
    /// 10-09 and the make-up Saturday 10-10 → 2026-10-11 00:00 CST.
    pub fn add_working_days(&self, from_ms: i64, n: u32) -> i64 {
        let mut day = day_of_date(Calendar::cst_date(from_ms));
        let mut left = n;
        while left > 0 {
            if day >= MAX_DAY {
                // Past the end of representable dates: saturate.
                return midnight_of_day(MAX_DAY + 1);
            }
            day += 1;
            if self.is_workday(date_of_day(day)) {
                left -= 1;
            }
        }
        midnight_of_day(day + 1)
    }

    /// Whole working days strictly after the CST date of `from_ms` up to and
    /// including the CST date of `to_ms`; 0 if `to_ms` is not on a later date.
    /// For reports ("handled in N working days").
    pub fn working_days_between(&self, from_ms: i64, to_ms: i64) -> u32 {
        let from = day_of_date(Calendar::cst_date(from_ms));
        let to = day_of_date(Calendar::cst_date(to_ms));
        let mut count: u32 = 0;
        let mut day = from;
        while day < to {
            day += 1;
            if self.is_workday(date_of_day(day)) {
                count = count.saturating_add(1);
            }
        }
        count
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    year: Spanned<i64>,
    source: Spanned<String>,
    #[serde(default)]
    holiday: Vec<RawHoliday>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    name: Spanned<String>,
    from: Spanned<toml::Value>,
    to: Spanned<toml::Value>,
    #[serde(default)]
    workdays: Vec<Spanned<toml::Value>>,
}

fn both(text: &str, span: std::ops::Range<usize>, d: Date) -> String {
    format!(
        "calendar {}: {d} is listed both as a holiday and as a make-up workday",
        line(text, span)
    )
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

/// A date (TOML local date or "YYYY-MM-DD" string) that must lie in `year`.
fn date_in_year(
    text: &str,
    v: &Spanned<toml::Value>,
    year: i16,
    holiday: &str,
    key: &str,
) -> Result<Date, String> {
    let at = line(text, v.span());
    let bad = |why: String| format!("calendar {at}: holiday \"{holiday}\" `{key}`: {why}");
    let d = match v.get_ref() {
        toml::Value::Datetime(dt) => match (dt.date, dt.time, dt.offset) {
            (Some(d), None, None) => Date::new(d.year as i16, d.month as i8, d.day as i8)
                .map_err(|e| bad(format!("{dt} is not a valid date ({e})")))?,
            _ => return Err(bad(format!("{dt} is not a plain date (YYYY-MM-DD)"))),
        },
        toml::Value::String(s) => s
            .parse::<Date>()
            .map_err(|e| bad(format!("\"{s}\" is not a date YYYY-MM-DD ({e})")))?,
        other => {
            return Err(bad(format!(
                "expected a date YYYY-MM-DD, found {}",
                other.type_str()
            )));
        }
    };
    if d.year() != year {
        return Err(bad(format!("{d} is outside the year {year}")));
    }
    Ok(d)
}

// Days since 1970-01-01 ("day numbers"), so that stepping through dates is
// integer arithmetic with no fallible calls. Civil-from-days and
// days-from-civil are Howard Hinnant's algorithms (proleptic Gregorian).

const MIN_DAY: i64 = -4_371_587; // -9999-01-01
const MAX_DAY: i64 = 2_932_896; // 9999-12-31

fn day_of_date(d: Date) -> i64 {
    let (y, m, dd) = (
        i64::from(d.year()),
        i64::from(d.month()),
        i64::from(d.day()),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn date_of_day(day: i64) -> Date {
    let z = day.clamp(MIN_DAY, MAX_DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // In range by the clamp above.
    Date::new(y as i16, m as i8, d as i8).expect("day number clamped to jiff's range")
}

fn midnight_of_day(day: i64) -> i64 {
    day * DAY_MS - CST_OFFSET_MS
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    /// Unix ms of a CST wall-clock time.
    fn cst(y: i16, m: i8, d: i8, h: i64, min: i64) -> i64 {
        Calendar::cst_midnight_ms(date(y, m, d)) + h * 3_600_000 + min * 60_000
    }

    #[test]
    fn day_numbers_round_trip_and_match_jiff() {
        assert_eq!(day_of_date(date(1970, 1, 1)), 0);
        assert_eq!(day_of_date(Date::MIN), MIN_DAY);
        assert_eq!(day_of_date(Date::MAX), MAX_DAY);
        let mut d = date(1999, 12, 1);
        let mut n = day_of_date(d);
        for _ in 0..(366 * 40) {
            assert_eq!(date_of_day(n), d);
            d = d.tomorrow().unwrap();
            n += 1;
            assert_eq!(day_of_date(d), n);
        }
        assert_eq!(date_of_day(i64::MIN), Date::MIN);
        assert_eq!(date_of_day(i64::MAX), Date::MAX);
    }

    #[test]
    fn cst_date_and_midnight() {
        // 2026-01-01T00:00+08:00 = 2025-12-31T16:00Z = 1767196800000.
        assert_eq!(
            Calendar::cst_midnight_ms(date(2026, 1, 1)),
            1_767_196_800_000
        );
        assert_eq!(Calendar::cst_date(1_767_196_800_000), date(2026, 1, 1));
        assert_eq!(
            Calendar::cst_date(1_767_196_800_000 - 1),
            date(2025, 12, 31)
        );
        assert_eq!(Calendar::cst_date(0), date(1970, 1, 1));
        assert_eq!(Calendar::cst_date(-CST_OFFSET_MS - 1), date(1969, 12, 31));
        // Agrees with jiff's own time-zone conversion.
        let at = 1_790_000_123_456;
        let z = jiff::Timestamp::from_millisecond(at)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)));
        assert_eq!(Calendar::cst_date(at), z.date());
        assert_eq!(Calendar::cst_date(i64::MAX), Date::MAX);
        assert_eq!(Calendar::cst_date(i64::MIN), Date::MIN);
    }

    #[test]
    fn builtin_loads_both_years() {
        let cal = Calendar::builtin();
        assert_eq!(cal.years(), vec![2025, 2026]);
        let texts = Calendar::builtin_texts();
        assert_eq!(
            texts.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![2025, 2026]
        );
        for (year, text) in texts {
            assert_eq!(Calendar::parse_year(text).unwrap().year, year);
        }
        let y25 = cal.year(2025).unwrap();
        // 1 + 8 + 3 + 5 + 3 + 8 days off; 2 + 1 + 2 make-up workdays.
        assert_eq!(y25.holidays.len(), 28);
        assert_eq!(y25.workdays.len(), 5);
        assert!(y25.source.contains("国办发明电〔2024〕12号"));
        let y26 = cal.year(2026).unwrap();
        // 3 + 9 + 3 + 5 + 3 + 3 + 7 days off; 1 + 2 + 1 + 2 make-up workdays.
        assert_eq!(y26.holidays.len(), 33);
        assert_eq!(y26.workdays.len(), 6);
    }

    #[test]
    fn national_day_2026_consult_three_working_days() {
        let cal = Calendar::builtin();
        // Accepted any time on 2026-09-30: 10-08, 10-09 and the make-up
        // Saturday 10-10 → due at the end of 10-10.
        for (h, m) in [(0, 0), (9, 30), (23, 59)] {
            assert_eq!(
                cal.add_working_days(cst(2026, 9, 30, h, m), 3),
                Calendar::cst_midnight_ms(date(2026, 10, 11))
            );
        }
        assert_eq!(
            cal.add_working_days(Calendar::cst_midnight_ms(date(2026, 10, 1)) - 1, 3),
            Calendar::cst_midnight_ms(date(2026, 10, 11))
        );
        // Accepted 2026-10-09 (Fri): 10-10 (Sat, worked), 10-12, 10-13.
        assert_eq!(
            cal.add_working_days(cst(2026, 10, 9, 15, 0), 3),
            Calendar::cst_midnight_ms(date(2026, 10, 14))
        );
        assert!(cal.is_workday(date(2026, 9, 20)));
        assert!(!cal.is_workday(date(2026, 10, 7)));
    }

    #[test]
    fn spring_festival_2026() {
        let cal = Calendar::builtin();
        for d in 15..=23 {
            assert!(!cal.is_workday(date(2026, 2, d)), "2026-02-{d} is off");
        }
        assert!(cal.is_workday(date(2026, 2, 14)), "Sat 2-14 is worked");
        assert!(cal.is_workday(date(2026, 2, 28)), "Sat 2-28 is worked");
        assert!(!cal.is_workday(date(2026, 2, 8)), "an ordinary Sunday");
        // Accepted Fri 2-13: Sat 2-14, then 2-24, 2-25 → end of 2-25.
        assert_eq!(
            cal.add_working_days(cst(2026, 2, 13, 10, 0), 3),
            Calendar::cst_midnight_ms(date(2026, 2, 26))
        );
        // Accepted in the holiday: 2-24 .. 2-27 and Sat 2-28 → 5 days.
        assert_eq!(
            cal.add_working_days(cst(2026, 2, 18, 10, 0), 5),
            Calendar::cst_midnight_ms(date(2026, 3, 1))
        );
        assert_eq!(
            cal.working_days_between(cst(2026, 2, 13, 10, 0), cst(2026, 2, 28, 8, 0)),
            6
        );
    }

    #[test]
    fn zero_days_is_end_of_the_same_day() {
        let cal = Calendar::builtin();
        assert_eq!(
            cal.add_working_days(cst(2026, 10, 3, 12, 0), 0),
            Calendar::cst_midnight_ms(date(2026, 10, 4))
        );
        assert_eq!(
            cal.add_working_days(cst(2026, 3, 2, 0, 0), 1),
            Calendar::cst_midnight_ms(date(2026, 3, 4))
        );
    }

    #[test]
    fn year_end_into_a_year_not_loaded_falls_back_to_weekdays() {
        let cal = Calendar::builtin();
        // 2027-01-01 is a Friday; with 2027 not loaded it counts as a
        // workday (a real schedule would make it 元旦).
        assert!(cal.is_workday(date(2027, 1, 1)));
        assert!(!cal.is_workday(date(2027, 1, 2)));
        // Accepted Wed 2026-12-30: 12-31 (Thu), 2027-01-01 (Fri), 01-04 (Mon).
        assert_eq!(
            cal.add_working_days(cst(2026, 12, 30, 17, 0), 3),
            Calendar::cst_midnight_ms(date(2027, 1, 5))
        );
        // Loading 2027 moves the deadline.
        let mut cal = cal;
        cal.insert_year(
            Calendar::parse_year(
                "year = 2027\nsource = \"test\"\n[[holiday]]\nname = \"元旦\"\nfrom = 2027-01-01\nto = 2027-01-03\n",
            )
            .unwrap(),
        );
        assert_eq!(cal.years(), vec![2025, 2026, 2027]);
        assert_eq!(
            cal.add_working_days(cst(2026, 12, 30, 17, 0), 3),
            Calendar::cst_midnight_ms(date(2027, 1, 6))
        );
        // An empty calendar is Monday–Friday everywhere.
        let empty = Calendar::default();
        assert_eq!(
            empty.add_working_days(cst(2026, 9, 30, 9, 0), 3),
            Calendar::cst_midnight_ms(date(2026, 10, 6))
        );
    }

    #[test]
    fn insert_year_replaces() {
        let mut cal = Calendar::builtin();
        let y = Calendar::parse_year("year = 2026\nsource = \"empty\"\n").unwrap();
        cal.insert_year(y);
        assert_eq!(cal.years(), vec![2025, 2026]);
        assert!(cal.is_workday(date(2026, 10, 1)));
        assert!(!cal.is_workday(date(2026, 10, 10)));
    }

    #[test]
    fn working_days_between_counts_after_from_up_to_to() {
        let cal = Calendar::builtin();
        let from = cst(2026, 9, 30, 9, 0);
        assert_eq!(cal.working_days_between(from, from), 0);
        assert_eq!(cal.working_days_between(from, from - DAY_MS), 0);
        assert_eq!(cal.working_days_between(from, cst(2026, 10, 7, 23, 0)), 0);
        assert_eq!(cal.working_days_between(from, cst(2026, 10, 10, 0, 1)), 3);
        assert_eq!(cal.working_days_between(from, cst(2026, 10, 13, 0, 1)), 5);
        // Consistent with add_working_days: the due day is n working days on.
        for n in 1..40 {
            let due = cal.add_working_days(from, n);
            assert_eq!(cal.working_days_between(from, due - 1), n);
        }
    }

    #[test]
    fn huge_spans_saturate() {
        let cal = Calendar::default();
        let end = Calendar::cst_midnight_ms(Date::MAX) + DAY_MS;
        assert_eq!(cal.add_working_days(cst(9999, 12, 30, 0, 0), 5), end);
        assert_eq!(cal.add_working_days(i64::MAX, 1), end);
    }

    fn err(text: &str) -> String {
        Calendar::parse_year(text).unwrap_err()
    }

    const HEAD: &str = "year = 2026\nsource = \"test\"\n[[holiday]]\nname = \"国庆节\"\n";

    #[test]
    fn parse_accepts_strings_and_weekend_holidays() {
        let y = Calendar::parse_year(&format!(
            "{HEAD}from = \"2026-10-03\"\nto = \"2026-10-04\"\nworkdays = [\"2026-10-10\"]\n"
        ))
        .unwrap();
        assert_eq!(y.holidays.len(), 2);
        assert!(y.workdays.contains(&date(2026, 10, 10)));
    }

    #[test]
    fn parse_rejects_bad_files_naming_the_problem() {
        let e = err(&format!("{HEAD}from = 2027-10-01\nto = 2026-10-07\n"));
        assert!(
            e.contains("line 5") && e.contains("outside the year 2026"),
            "{e}"
        );

        let e = err(&format!(
            "{HEAD}from = 2026-10-01\nto = 2026-10-07\nworkdays = [2026-10-10]\n\
             [[holiday]]\nname = \"x\"\nfrom = 2026-10-10\nto = 2026-10-10\n"
        ));
        assert!(
            e.contains("line 10") && e.contains("2026-10-10") && e.contains("both"),
            "{e}"
        );
        let e = err(&format!(
            "{HEAD}from = 2026-10-01\nto = 2026-10-07\nworkdays = [2026-10-10, 2026-10-04]\n"
        ));
        assert!(
            e.contains("line 7") && e.contains("2026-10-04") && e.contains("both"),
            "{e}"
        );

        let e = err(&format!(
            "{HEAD}from = 2026-10-01\nto = 2026-10-07\nworkdays = [2026-10-09]\n"
        ));
        assert!(
            e.contains("line 7") && e.contains("2026-10-09") && e.contains("not a Saturday"),
            "{e}"
        );

        let e = err(&format!("{HEAD}from = \"2026-10-1x\"\nto = 2026-10-07\n"));
        assert!(e.contains("`from`") && e.contains("not a date"), "{e}");

        let e = err(&format!("{HEAD}from = 2026-02-30\nto = 2026-03-01\n"));
        assert!(e.contains("line 5"), "{e}");

        let e = err(&format!(
            "{HEAD}from = 2026-10-01T08:00:00\nto = 2026-10-07\n"
        ));
        assert!(e.contains("not a plain date"), "{e}");

        let e = err(&format!("{HEAD}from = 2026-10-07\nto = 2026-10-01\n"));
        assert!(e.contains("after"), "{e}");

        let e = err(&format!(
            "{HEAD}from = 2026-10-01\nto = 2026-10-07\nwork_days = []\n"
        ));
        assert!(e.contains("work_days"), "{e}");

        let e = err(&format!(
            "{HEAD}from = 2026-10-01\nto = 2026-10-07\n\
             [[holiday]]\nname = \"y\"\nfrom = 2026-10-07\nto = 2026-10-08\n"
        ));
        assert!(e.contains("2026-10-07") && e.contains("already"), "{e}");

        let e = err("year = 2026\n");
        assert!(e.contains("source"), "{e}");

        let e = err("year = 2026\nsource = \" \"\n");
        assert!(e.contains("`source` is empty"), "{e}");

        let e = err("year = 99999\nsource = \"x\"\n");
        assert!(e.contains("`year`"), "{e}");

        let e = err(
            "year = 2026\nsource = \"x\"\n[[holiday]]\nname = \"x\"\nfrom = 5\nto = 2026-01-01\n",
        );
        assert!(
            e.contains("`from`: expected a date YYYY-MM-DD, found integer"),
            "{e}"
        );
    }
}
