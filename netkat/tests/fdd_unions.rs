//! The one-pass union of disjoint exact tests (`Fdd::disjoint_union`, taken by
//! every `+` whose branches test one field for different values: routing tables,
//! the switches of a network) must build the very node the pairwise union builds,
//! since the store is hash-consed and the rest of the compiler relies on one node
//! per function. Random tables, with repeated values (the pass must step aside)
//! and shared targets, are compiled both ways in one store and compared.

use netkat::fdd::Fdd;
use netkat::ir::{CPol, CPred, HField, Pattern};
use proptest::prelude::*;

fn arms() -> impl Strategy<Value = Vec<(u64, u64)>> {
    proptest::collection::vec((0u64..40, 1u64..5), 0..30)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_union_of_exact_tests_is_the_pairwise_union(
        arms in arms(),
        field in prop_oneof![Just(HField::Switch), Just(HField::EthDst), Just(HField::L4Dst)],
    ) {
        let mut fdd = Fdd::new();
        let policy = arms
            .iter()
            .map(|&(v, p)| CPol::seq(CPol::filter(CPred::test(field, v)), CPol::Mod(HField::Port, p)))
            .reduce(CPol::union)
            .unwrap_or_else(|| CPol::filter(CPred::False));
        let compiled = fdd.compile(&policy).expect("compiles");
        let mut pairwise = netkat::fdd::DROP;
        for &(v, p) in &arms {
            let test = fdd.atom(Pattern::exact(field, v));
            let out = fdd.modify(HField::Port, p);
            let arm = fdd.prod(test, out);
            pairwise = fdd.union(pairwise, arm);
        }
        prop_assert_eq!(compiled, pairwise);
    }
}
