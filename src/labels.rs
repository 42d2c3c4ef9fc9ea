//! The Chinese words of what the CLI prints for people — supervisors and
//! call-takers at 12345 centers read it — each beside the identifier that
//! `--json`, the flags and the logs use (`投诉 complaint`): one table per
//! kind of word, shared by every command (`ticket`, `report`, `query`,
//! `status`, `group`, `policy`). Ticket statuses are the core's
//! (`lifecycle::status_zh`); deadline marks are `ticket_cli`'s.

use hotline_node::core::lifecycle::{parse_status, status_zh};

/// "中文 identifier", or the identifier alone when there is no Chinese
/// word for it (a value newer than this table).
pub fn both(zh: &str, id: &str) -> String {
    if zh == id || zh.is_empty() {
        id.to_string()
    } else {
        format!("{zh} {id}")
    }
}

/// A kind of request (DESIGN.md §2): "complaint" → "投诉".
pub fn kind_zh(key: &str) -> &str {
    match key {
        "consult" => "咨询",
        "help" => "求助",
        "complaint" => "投诉",
        "report" => "举报",
        "suggestion" => "建议",
        "praise" => "表扬",
        "unspecified" => "未分类",
        other => other,
    }
}

/// A ticket status by its identifier ("awaiting_sign" → "待签收"), as the
/// core names them.
pub fn status_zh_of(key: &str) -> &str {
    match parse_status(key) {
        Some(s) => status_zh(s as i32),
        None if key == "unspecified" => "未知",
        None => key,
    }
}

/// A priority, in the words `--priority` also takes (`parse_priority`).
pub fn priority_zh(key: &str) -> &str {
    match key {
        "normal" => "一般",
        "urgent" => "紧急",
        "emergency" => "特急",
        other => other,
    }
}

/// An event of a ticket's history (the glossary's words, DESIGN.md §2):
/// "transfer_out" → "跨区域转出".
pub fn event_zh(kind: &str) -> &str {
    match kind {
        "accept" => "受理",
        "answer" => "直接答复",
        "refer" => "不予受理",
        "dispatch" => "派单",
        "sign" => "签收",
        "return" => "退单",
        "review_return" => "退单审核",
        "extend" => "延期申请",
        "decide_extension" => "延期审批",
        "reply" => "办结反馈",
        "callback" => "回访",
        "reopen" => "重办",
        "close" => "结案",
        "archive" => "归档",
        "merge" => "并单",
        "merged_into" => "并入",
        "urge" => "催办",
        "supervise" => "督办",
        "transfer_out" => "跨区域转出",
        "transfer_in" => "跨区域转入",
        "transfer_delivered" => "转出已送达",
        "transfer_refused" => "转出被退回",
        "transfer_not_started" => "未能转出",
        other => other,
    }
}

/// A replica's role as `Admin.Status` names it (raft's, and the node's
/// own: joining, removed), or a node that did not answer.
pub fn role_zh(role: &str) -> &str {
    match role {
        "leader" => "领导者",
        "follower" => "跟随者",
        "candidate" => "候选人",
        "pre-candidate" => "预候选人",
        "learner" => "学习者",
        "joining" => "加入中",
        "removed" => "已移除",
        "unreachable" => "不可达",
        other => other,
    }
}

/// Where a part of a group's policy comes from (`hotline policy show`):
/// the build's own texts or ones a `policy load` replicated.
pub fn policy_zh(key: &str) -> &str {
    match key {
        "built_in" => "内置",
        "custom" => "自定义",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_beside_the_identifier() {
        assert_eq!(both(kind_zh("complaint"), "complaint"), "投诉 complaint");
        assert_eq!(
            both(status_zh_of("awaiting_sign"), "awaiting_sign"),
            "待签收 awaiting_sign"
        );
        assert_eq!(status_zh_of("transferred"), "已转出");
        assert_eq!(status_zh_of("unspecified"), "未知");
        assert_eq!(both(priority_zh("normal"), "normal"), "一般 normal");
        assert_eq!(
            both(event_zh("transfer_out"), "transfer_out"),
            "跨区域转出 transfer_out"
        );
        assert_eq!(
            both(role_zh("pre-candidate"), "pre-candidate"),
            "预候选人 pre-candidate"
        );
        assert_eq!(both(policy_zh("custom"), "custom"), "自定义 custom");
        // A word this table does not know yet shows as it came.
        assert_eq!(both(event_zh("new_event"), "new_event"), "new_event");
    }

    /// Every event the core writes and every command's name has a word.
    #[test]
    fn every_event_kind_has_a_chinese_word() {
        for kind in [
            "accept",
            "answer",
            "refer",
            "dispatch",
            "sign",
            "return",
            "review_return",
            "extend",
            "decide_extension",
            "reply",
            "callback",
            "reopen",
            "close",
            "archive",
            "merge",
            "merged_into",
            "urge",
            "supervise",
            "transfer_out",
            "transfer_in",
            "transfer_delivered",
            "transfer_refused",
            "transfer_not_started",
        ] {
            assert_ne!(event_zh(kind), kind);
        }
    }
}
