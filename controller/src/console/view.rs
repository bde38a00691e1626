//! What the console shows, as one JSON document built from the API's own answers:
//! `GET /status`, the placement measurements (`GET /placement/snapshot`) and the
//! placement plan (`GET /placement`). It owns the folding of those answers into
//! the map's clouds, hosts and tunnels, the VMs with the clouds their traffic
//! comes from, and the migration and decision lists; it never reads state of its
//! own, so the console cannot show anything the API does not say.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The newest value of a measurement series (`{"samples": [[t_ms, value], …]}`).
fn newest(series: &Value) -> Option<f64> {
    series["samples"].as_array()?.last()?[1].as_f64()
}

/// The newest one-way latency between clouds `a` and `b`, measured either way.
fn latency_between(measurements: &Value, a: &str, b: &str) -> Option<f64> {
    let latency = &measurements["latency_ms"];
    newest(&latency[a][b]).or_else(|| newest(&latency[b][a]))
}

/// The two names in a fixed order, so a pair is one key whichever way it is seen.
fn ordered<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Builds the console's document from `status` (the answer of `GET /status`),
/// `measurements` (the `measurements` of a placement snapshot, `null` when not
/// taken) and `decisions` (the plan's decisions, `null` when not taken).
pub fn build(status: &Value, measurements: &Value, decisions: &Value) -> Value {
    let empty = Vec::new();
    let hosts_in = status["hosts"].as_array().unwrap_or(&empty);
    let vms_in = status["vms"].as_array().unwrap_or(&empty);
    let cloud_of: BTreeMap<&str, &str> = hosts_in
        .iter()
        .filter_map(|h| Some((h["name"].as_str()?, h["cloud"].as_str()?)))
        .collect();

    // Client traffic entering in one cloud for a VM in another crosses the
    // tunnel between them: that is the traffic the map draws on it.
    let mut pair_traffic: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut vms = Vec::new();
    for vm in vms_in {
        let name = vm["name"].as_str().unwrap_or_default();
        let host = vm["host"].as_str().unwrap_or_default();
        let cloud = cloud_of.get(host).copied().unwrap_or_default();
        let mut clients = Vec::new();
        if let Some(regions) = measurements["traffic"][name].as_object() {
            for (region, series) in regions {
                let Some(rate) = newest(series).filter(|r| *r > 0.0) else {
                    continue;
                };
                clients.push(json!({ "cloud": region, "bytes_per_s": rate }));
                if region != cloud && !cloud.is_empty() {
                    let (a, b) = ordered(region, cloud);
                    *pair_traffic.entry((a.into(), b.into())).or_default() += rate;
                }
            }
        }
        vms.push(json!({
            "name": name,
            "host": host,
            "cloud": cloud,
            "ip": vm["ip"],
            "public_ip": vm["public_ip"],
            "tenant": vm["tenant"],
            "clients": clients,
        }));
    }

    let mut tunnels = Vec::new();
    for (i, a) in hosts_in.iter().enumerate() {
        for b in &hosts_in[i + 1..] {
            let (Some(ha), Some(hb)) = (a["name"].as_str(), b["name"].as_str()) else {
                continue;
            };
            let (ca, cb) = (cloud_of[ha], cloud_of[hb]);
            let up = |from: &Value, to: &str| {
                from["switch"]["tunnels_up"][dataplane_core::port::tunnel_port_name(to)].as_bool()
            };
            let (cx, cy) = ordered(ca, cb);
            tunnels.push(json!({
                "a": ha,
                "b": hb,
                "up": up(a, hb).unwrap_or(false) && up(b, ha).unwrap_or(false),
                "latency_ms": latency_between(measurements, ca, cb),
                "bytes_per_s": pair_traffic.get(&(cx.into(), cy.into())).copied().unwrap_or(0.0),
            }));
        }
    }

    let hosts: Vec<Value> = hosts_in
        .iter()
        .map(|h| {
            json!({
                "name": h["name"],
                "cloud": h["cloud"],
                "connected": h["switch"]["connected"],
                "synced": h["switch"]["synced_version"] == status["version"],
                "flows": h["switch"]["flows"],
                "tunnel_endpoint": h["tunnel_endpoint"],
            })
        })
        .collect();

    let mut view = Map::new();
    view.insert("version".into(), status["version"].clone());
    view.insert("policy".into(), status["policy"].clone());
    view.insert("clouds".into(), status["clouds"].clone());
    view.insert("hosts".into(), hosts.into());
    view.insert("tunnels".into(), tunnels.into());
    view.insert("vms".into(), vms.into());
    view.insert("migration".into(), status["migration"].clone());
    view.insert("timeline".into(), status["timeline"].clone());
    view.insert("moves".into(), status["placement"].clone());
    view.insert("decisions".into(), decisions.clone());
    Value::Object(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Value {
        json!({
            "version": 7,
            "policy": "policy",
            "clouds": [{"name": "c1", "region": "us", "location": null},
                       {"name": "c2", "region": "eu", "location": null}],
            "hosts": [
                {"name": "h1", "cloud": "c1", "tunnel_endpoint": "192.0.2.2:51820",
                 "switch": {"connected": true, "synced_version": 7, "flows": 9,
                            "tunnels_up": {"wg-h2": true}}},
                {"name": "h2", "cloud": "c2", "tunnel_endpoint": "192.0.2.3:51820",
                 "switch": {"connected": true, "synced_version": 6, "flows": 8,
                            "tunnels_up": {"wg-h1": true}}},
            ],
            "vms": [{"name": "web", "host": "h1", "ip": "100.64.1.1",
                     "public_ip": "203.0.113.5", "tenant": null}],
            "migration": null,
            "timeline": {"vm": "", "events": []},
            "placement": {"moving": null, "history": []},
        })
    }

    #[test]
    fn the_tunnel_carries_the_latency_and_the_traffic_entering_in_the_other_cloud() {
        let measurements = json!({
            "latency_ms": {"c2": {"c1": {"samples": [[1, 20.0], [2, 15.5]]}}},
            "traffic": {"web": {"c2": {"samples": [[2, 3000.0]]},
                                "c1": {"samples": [[2, 0.0]]}}},
        });
        let view = build(&status(), &measurements, &Value::Null);
        let tunnel = &view["tunnels"][0];
        assert_eq!((&tunnel["a"], &tunnel["b"]), (&json!("h1"), &json!("h2")));
        assert_eq!(tunnel["up"], true);
        assert_eq!(tunnel["latency_ms"], 15.5);
        assert_eq!(tunnel["bytes_per_s"], 3000.0);
        let web = &view["vms"][0];
        assert_eq!(
            (&web["cloud"], &web["public_ip"]),
            (&json!("c1"), &json!("203.0.113.5"))
        );
        assert_eq!(
            web["clients"],
            json!([{"cloud": "c2", "bytes_per_s": 3000.0}]),
            "quiet regions are left out"
        );
        assert_eq!(view["hosts"][1]["synced"], false);
    }

    #[test]
    fn without_measurements_the_map_still_has_every_tunnel() {
        let view = build(&status(), &Value::Null, &Value::Null);
        assert_eq!(view["tunnels"].as_array().map(Vec::len), Some(1));
        assert_eq!(view["tunnels"][0]["latency_ms"], Value::Null);
        assert_eq!(view["vms"][0]["clients"], json!([]));
    }
}
