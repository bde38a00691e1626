//! The global compiler's scale check: `global_scale K` compiles fat-tree routing
//! written with links (`netkat::gen::linked_routing_policy`, `(routing; links)*;
//! routing`) and builds every switch's table, printing a Markdown row
//! `| input | rules | seconds |`. Unicast routing never copies a packet,
//! so it shows what the global compiler costs where copies never meet.

use netkat::gen::{fat_tree, linked_routing_policy};
use netkat::ir::NoNames;
use netkat::{Groups, TableOptions};
use std::time::Instant;

fn main() {
    let k = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(4);
    let src = linked_routing_policy(&fat_tree(k));
    let start = Instant::now();
    let prog = netkat::check(&src, &NoNames).expect("generated policies are valid");
    let mut compiled = netkat::compile(&prog).expect("compiles");
    let mut rules = 0;
    for sw in compiled.switches().to_vec() {
        let table = compiled
            .table_with(sw, TableOptions::default(), Groups::Allowed)
            .expect("table");
        rules += table.flows.len();
    }
    println!(
        "| linked fat-tree k={k} | {rules} | {:.3} |",
        start.elapsed().as_secs_f64()
    );
}
