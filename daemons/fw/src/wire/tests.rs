use super::compare::element_diff;
use super::*;

#[test]
fn registers_have_one_canonical_form_whatever_name_the_wire_used() {
    // NFT_REG_1 and NFT_REG32_00 are the same register; the kernel reports REG_1.
    assert_eq!(Reg::from_wire(1), Reg::from_wire(8));
    assert_eq!(Reg::from_wire(8).to_wire(), 1);
    // NFT_REG32_01 is not 16-byte aligned: reported as itself.
    assert_eq!(Reg::from_wire(9).to_wire(), 9);
    assert_eq!(Reg::r(2), Reg::from_wire(2));
    assert_eq!(Reg::r32(4), Reg::r(2));
    for n in [0, 1, 2, 3, 4, 9, 10, 13, 17, 23] {
        assert_eq!(Reg::from_wire(n).to_wire(), n, "{n}");
    }
}

fn elem(k: u8) -> Elem {
    Elem {
        key: vec![k],
        data: ElemData::None,
        flags: 0,
    }
}

#[test]
fn element_diff_finds_additions_and_removals_of_sorted_lists() {
    let (a, r) = element_diff(&[elem(1), elem(3), elem(4)], &[elem(2), elem(3), elem(5)]);
    assert_eq!(a, vec![elem(1), elem(4)]);
    assert_eq!(r, vec![elem(2), elem(5)]);
    let (a, r) = element_diff(&[elem(1)], &[elem(1)]);
    assert!(a.is_empty() && r.is_empty());
}

#[test]
fn a_set_with_room_fits_and_one_too_small_does_not() {
    let want = SetSpec {
        flags: 8,
        key_type: 1,
        key_len: 28,
        data_type: 2,
        data_len: 8,
        obj_type: 0,
        size: Some(16),
    };
    let live = SetSpec {
        size: Some(64),
        ..want.clone()
    };
    assert!(want.fits(&live, 40));
    assert!(!want.fits(&live, 65));
    assert!(!want.fits(
        &SetSpec {
            size: None,
            ..want.clone()
        },
        1
    ));
    assert!(!want.fits(&SetSpec { flags: 0, ..live }, 1));
}

#[test]
fn forward_keys_render_in_nft_notation() {
    let mut k = vec![0u8; 16];
    k[..6].copy_from_slice(b"br-api");
    k.extend([192, 198, 0, 30, 6, 0, 0, 0, 0, 80, 0, 0]);
    let e = Elem {
        key: k,
        data: ElemData::Value(vec![10, 17, 5, 30, 0, 80, 0, 0]),
        flags: 0,
    };
    let spec = SetSpec {
        flags: 8,
        key_type: 0,
        key_len: 28,
        data_type: 0,
        data_len: 8,
        obj_type: 0,
        size: None,
    };
    assert_eq!(
        e.render(&spec),
        "\"br-api\" . 192.198.0.30 . tcp . 80 : 10.17.5.30 . 80"
    );
}
