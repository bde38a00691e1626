//! Fuzzes the policy front end: any bytes through the lexer, parser, lowering and
//! (for small accepted policies) the compiler must return, never panic; every
//! error must render with a position inside the text.
#![no_main]

use netkat::{ir::NoNames, parser, TableOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let _ = parser::parse_predicate(src);
    match netkat::check(src, &NoNames) {
        Err(d) => {
            if let Some(s) = d.span {
                assert!(s.start <= src.len());
            }
            let _ = d.render("fuzz.kat", src);
        }
        Ok(prog) if src.len() < 200 => {
            if let Ok(mut c) = netkat::compile(&prog) {
                let _ = c.tables(TableOptions::default());
            }
        }
        Ok(_) => {}
    }
});
