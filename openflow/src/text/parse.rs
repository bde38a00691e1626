//! Parsing whole flow lines and files: the match items up to `actions=`, then
//! the action list, then the checks that need both (prerequisites, transport
//! field names).

use super::actions::parse_actions;
use super::lex::{items, Ctx, Item, ParseError};
use super::matches::{parse_match_item, Builder};
use super::values::DEFAULT_PRIORITY;
use crate::flow::{Field, FlowMatch, FlowSpec};

/// Parses one flow in `ovs-ofctl add-flow` syntax, e.g.
/// `table=0,priority=100,ip,nw_dst=100.64.0.0/10,actions=mod_dl_dst:02:00:00:00:00:02,output:3`.
pub fn parse_flow(line: &str) -> Result<FlowSpec, ParseError> {
    parse_line(line, 1)
}

/// Parses a file of flows, one a line; blank lines and lines starting with `#` are
/// skipped. The first bad line stops the parse, and the error names it.
pub fn parse_flows(text: &str) -> Result<Vec<FlowSpec>, ParseError> {
    Ok(parse_numbered_flows(text)?
        .into_iter()
        .map(|(_, flow)| flow)
        .collect())
}

/// [`parse_flows`], each flow with the line (from 1) it was read from, so that
/// what later refuses a flow can name its line too.
pub fn parse_numbered_flows(text: &str) -> Result<Vec<(usize, FlowSpec)>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        out.push((i + 1, parse_line(line, i + 1)?));
    }
    Ok(out)
}

fn parse_line(line: &str, line_no: usize) -> Result<FlowSpec, ParseError> {
    let cx = Ctx { line_no, line };
    let all = items(line, 0);
    let mut spec = FlowSpec {
        table_id: 0,
        priority: DEFAULT_PRIORITY,
        matcher: FlowMatch::any(),
        instructions: Vec::new(),
        cookie: 0,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
    };
    let mut b = Builder {
        m: FlowMatch::any(),
        by: Vec::new(),
        needs_proto: Vec::new(),
    };
    let mut actions_at: Option<(Item<'_>, usize)> = None;
    for item in &all {
        if item.key == "actions" || item.key == "action" {
            if item.value.is_none() {
                return Err(cx.err(item, "`actions` needs `=` and a list"));
            }
            // The action list runs to the end of the line.
            let start = item.at + item.key.len() + 1;
            actions_at = Some((*item, start));
            break;
        }
        parse_match_item(&cx, item, &mut spec, &mut b)?;
    }
    let Some((act_item, start)) = actions_at else {
        let end = Item {
            at: line.len(),
            text: "",
            key: "",
            value: None,
        };
        return Err(cx.err(&end, "missing `actions=`"));
    };
    // Prerequisites and protocol-specific names.
    if let Err(e) = b.m.check_prerequisites() {
        let field = match &e {
            crate::flow::MatchError::Prerequisite { field, .. }
            | crate::flow::MatchError::Conflict(field)
            | crate::flow::MatchError::ValueOutsideMask(field) => *field,
        };
        let item =
            b.by.iter()
                .find(|(f, _)| *f == field)
                .map_or(act_item, |(_, i)| *i);
        return Err(cx.err(&item, e.to_string()));
    }
    let proto = b.m.exact(Field::IpProto);
    for (allowed, item) in &b.needs_proto {
        if !allowed.iter().any(|p| proto == Some(u128::from(*p))) {
            let want: Vec<String> = allowed.iter().map(u8::to_string).collect();
            return Err(cx.err(
                item,
                format!("`{}` needs nw_proto={}", item.key, want.join(" or ")),
            ));
        }
    }
    spec.matcher = b.m;
    let rest = line.get(start..).unwrap_or("");
    spec.instructions = parse_actions(&cx, rest, start, &spec.matcher)?;
    Ok(spec)
}
