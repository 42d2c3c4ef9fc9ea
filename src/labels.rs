//! The Chinese words of what the CLI prints for people — supervisors and
//! call-takers at 12345 centers read it — each beside the identifier that
//! `--json`, the flags and the logs use (`投诉 complaint`): one table per
//! kind of word, shared by every command (`ticket`, `report`, `query`,
//! `status`, `group`, `policy`, `transfers`). Ticket statuses are the core's
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
        "on_disk" => "仅在磁盘未加载",
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

/// The words of a drill (演练) as `hotline status` shows it: a rule's
/// action (`faults::action_name`) and what the node counts.
pub fn drill_zh(key: &str) -> &str {
    match key {
        "partition" => "网络分区",
        "delay" => "延迟",
        "drop" => "丢包",
        "node" => "节点",
        "dropped" => "已丢弃",
        "delayed" => "已延迟",
        "generation" => "代次",
        "healed" => "已解除",
        other => other,
    }
}

/// The columns of a table of transfer records (`hotline transfers`,
/// `hotline query cross-province`): "FROM" → "转自", as a listed ticket's
/// transfer cell reads (转自 / 转至).
pub fn transfer_column_zh(key: &str) -> &str {
    match key {
        "TICKET" => "工单编号",
        "FROM" => "转自",
        "TO" => "转至",
        "STATE" => "状态",
        "SENT" => "发出时间",
        "AGE" => "已历时",
        "HOPS" => "经由",
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
        assert_eq!(
            both(drill_zh("partition"), "partition"),
            "网络分区 partition"
        );
        assert_eq!(both(transfer_column_zh("TO"), "TO"), "转至 TO");
        // A word this table does not know yet shows as it came.
        assert_eq!(both(event_zh("new_event"), "new_event"), "new_event");
    }

    /// Every action a drill rule may take has a word.
    #[test]
    fn every_drill_action_has_a_chinese_word() {
        use hotline_proto::v1::FaultAction;
        for action in [
            FaultAction::Partition,
            FaultAction::Delay,
            FaultAction::Drop,
        ] {
            let key = hotline_node::faults::action_name(action as i32);
            assert_ne!(drill_zh(key), key);
        }
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
