//! The head of the `scd` configuration every namespace test writes for its hosts:
//! datapath id and name, the overlay behind the anycast gateway MAC, the metrics
//! endpoint and the static flows file. Ports, tunnels and peers follow it, per test.

use crate::METRICS_PORT;

/// The overlay's anycast gateway MAC in the tests' configurations.
pub const GATEWAY_MAC: &str = "02:5c:00:00:00:01";

/// `datapath_id` (a TOML value: a number or a quoted hex string), `name`, the
/// overlay 100.64.0.0/10 behind [`GATEWAY_MAC`] and metrics on
/// 127.0.0.1:[`METRICS_PORT`]; with `[flows]` read from the file `flows` when
/// `static_flows`.
pub fn scd_config_head(datapath_id: &str, name: &str, static_flows: bool) -> String {
    let flows = if static_flows {
        "[flows]\nfile = \"flows\"\n"
    } else {
        ""
    };
    format!(
        "datapath_id = {datapath_id}\nname = \"{name}\"\n[overlay]\nprefix = \"100.64.0.0/10\"\n\
         gateway_mac = \"{GATEWAY_MAC}\"\n[metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n{flows}"
    )
}
