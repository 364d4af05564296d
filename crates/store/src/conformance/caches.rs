//! Conformance of engines' cache contents: a report replaces the previous one whole,
//! duplicates are kept once, holders are found per element across engines, and a rolled-back
//! transaction leaves nothing.

use idlegrid_types::{ElementHash, PartyId};

use super::R;
use crate::{Store, StoreError};

fn engine(n: u8) -> PartyId {
    PartyId::from_public_key(&[n; 32])
}

fn element(n: u8) -> ElementHash {
    ElementHash::of(&[n])
}

pub fn cache_reports_replace_and_find_holders(store: &impl Store) {
    let (a, b) = (engine(1), engine(2));
    store
        .write(|tx| -> R<()> {
            assert!(tx.caches().cache_contents(&a)?.is_empty());
            tx.caches().set_cache_contents(&a, &[element(1), element(2), element(1)], 10)?;
            tx.caches().set_cache_contents(&b, &[element(2), element(3)], 11)?;
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| -> R<()> {
            let mut held_by_a = vec![element(1), element(2)];
            held_by_a.sort();
            assert_eq!(tx.caches().cache_contents(&a)?, held_by_a);
            let mut expected = vec![(a.clone(), element(2)), (b.clone(), element(2)), (b.clone(), element(3))];
            expected.sort();
            assert_eq!(tx.caches().cache_holders(&[element(2), element(3), element(9)])?, expected);
            assert!(tx.caches().cache_holders(&[])?.is_empty());
            // A new report replaces the old one whole.
            tx.caches().set_cache_contents(&a, &[element(3)], 20)?;
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.caches().cache_contents(&a)?, vec![element(3)]);
            assert!(tx.caches().cache_holders(&[element(1)])?.is_empty());
            let mut expected = vec![(a.clone(), element(3)), (b.clone(), element(3))];
            expected.sort();
            assert_eq!(tx.caches().cache_holders(&[element(3)])?, expected);
            Ok(())
        })
        .unwrap();
    let rolled_back: R<()> = store.write(|tx| {
        tx.caches().set_cache_contents(&b, &[], 30)?;
        Err(StoreError::Conflict("abort".into()))
    });
    assert!(rolled_back.is_err());
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.caches().cache_contents(&b)?.len(), 2, "a rolled-back report leaves the old one");
            tx.caches().set_cache_contents(&b, &[], 40)?;
            assert!(tx.caches().cache_contents(&b)?.is_empty());
            Ok(())
        })
        .unwrap();
}
