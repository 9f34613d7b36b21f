//! The RFC 6962 (section 2.1) / RFC 9162 (section 2.1) Merkle tree.
//!
//! Leaves are hashed as `SHA-256(0x00 || data)` and interior nodes as
//! `SHA-256(0x01 || left || right)`: the prefixes keep a leaf from being
//! presented as an interior node (second-preimage attack). Proofs are
//! generated with the RFC 6962 recursive definitions (`PATH`, `SUBPROOF`)
//! and checked with the RFC 9162 iterative verifiers, so the two halves
//! check each other as well as the published test vectors.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(data)
        .finalize()
        .into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH(D[n]) over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the audit path of leaf `index`.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut p = inclusion_proof(index, &leaves[..k]);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_proof(index - k, &leaves[k..]);
        p.push(root(&leaves[..k]));
        p
    }
}

/// PROOF(m, D[n]): proves the tree of the first `m` leaves is a prefix of
/// the tree of all of `leaves`.
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn sub(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { Vec::new() } else { vec![root(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = sub(m, &d[..k], b);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = sub(m - k, &d[k..], false);
            p.push(root(&d[..k]));
            p
        }
    }
    if m == 0 || m > leaves.len() {
        return Vec::new();
    }
    sub(m, leaves, true)
}

/// RFC 9162 2.1.3.2: does `proof` show `leaf` at `index` in the tree of
/// `size` leaves with root `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 2.1.4.2: does `proof` show that the tree of `first` leaves with
/// root `first_root` is a prefix of the tree of `second` leaves with root
/// `second_root`?
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second || proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *first_root && sr == *second_root && sn == 0
}

/// The right edge of a growing tree (the roots of its perfect subtrees), so
/// that the root after every append costs O(log n) instead of O(n). The
/// verifier uses it to check the signed head stored with every entry.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// (height, hash) of perfect subtrees, left to right.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.size += 1;
        let mut cur = (0u32, leaf);
        while let Some(&(h, left)) = self.nodes.last() {
            if h != cur.0 {
                break;
            }
            self.nodes.pop();
            cur = (h + 1, node_hash(&left, &cur.1));
        }
        self.nodes.push(cur);
    }

    /// The current root (MTH of all leaves appended).
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{hex, unhex, unhex32};

    // The Certificate Transparency reference vectors for RFC 6962 (the
    // eight leaves and roots used by certificate-transparency's
    // merkle_tree_test and by transparency-dev/merkle).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    // (leaf index 0-based, tree size, path)
    const INCLUSION: [(usize, usize, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    const CONSISTENCY: [(usize, usize, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&unhex(l).unwrap()))
            .collect()
    }
    fn hs(v: &[&str]) -> Vec<Hash> {
        v.iter().map(|s| unhex32(s).unwrap()).collect()
    }

    #[test]
    fn roots_match_rfc6962_vectors_recursive_and_incremental() {
        let l = leaves();
        let mut f = Frontier::new();
        assert_eq!(hex(&f.root()), ROOTS[0]);
        for n in 1..=8 {
            assert_eq!(hex(&root(&l[..n])), ROOTS[n], "size {n}");
            f.push(l[n - 1]);
            assert_eq!(hex(&f.root()), ROOTS[n], "incremental size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_vectors_and_verify() {
        let l = leaves();
        for (i, n, path) in INCLUSION {
            let p = inclusion_proof(i, &l[..n]);
            assert_eq!(p, hs(path), "leaf {i} size {n}");
            let r = unhex32(ROOTS[n]).unwrap();
            assert!(verify_inclusion(i as u64, n as u64, &l[i], &p, &r));
            // wrong leaf, wrong index, wrong root (the size is bound to the
            // root by the signature over both, not by the proof)
            assert!(!verify_inclusion(
                i as u64,
                n as u64,
                &l[(i + 1) % n],
                &p,
                &r
            ));
            assert!(!verify_inclusion(
                (i as u64 + 1) % n as u64,
                n as u64,
                &l[i],
                &p,
                &r
            ));
            assert!(!verify_inclusion(
                i as u64,
                n as u64,
                &l[i],
                &p,
                &empty_root()
            ));
        }
    }

    #[test]
    fn consistency_proofs_match_vectors_and_verify() {
        let l = leaves();
        for (m, n, path) in CONSISTENCY {
            let p = consistency_proof(m, &l[..n]);
            assert_eq!(p, hs(path), "{m} -> {n}");
            let (r1, r2) = (unhex32(ROOTS[m]).unwrap(), unhex32(ROOTS[n]).unwrap());
            assert!(verify_consistency(m as u64, n as u64, &p, &r1, &r2));
            if m != n {
                assert!(!verify_consistency(m as u64, n as u64, &p, &r2, &r2));
                assert!(!verify_consistency(m as u64, n as u64, &p, &r1, &r1));
            }
        }
    }

    #[test]
    fn every_proof_in_every_small_tree_verifies_and_tampering_fails() {
        let l: Vec<Hash> = (0..40u8).map(|i| leaf_hash(&[i, i ^ 0x5a])).collect();
        for n in 1..=l.len() {
            let r = root(&l[..n]);
            for i in 0..n {
                let p = inclusion_proof(i, &l[..n]);
                assert!(
                    verify_inclusion(i as u64, n as u64, &l[i], &p, &r),
                    "{i}/{n}"
                );
                let mut bad = l[i];
                bad[0] ^= 1;
                assert!(!verify_inclusion(i as u64, n as u64, &bad, &p, &r));
            }
            for m in 1..=n {
                let p = consistency_proof(m, &l[..n]);
                let rm = root(&l[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &p, &rm, &r),
                    "{m}->{n}"
                );
                if m < n {
                    let mut other = l[..m].to_vec();
                    other[m - 1][0] ^= 1;
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64,
                        &p,
                        &root(&other),
                        &r
                    ));
                }
            }
        }
    }

    #[test]
    fn a_leaf_cannot_pose_as_a_node() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut concat = a.to_vec();
        concat.extend_from_slice(&b);
        assert_ne!(leaf_hash(&concat), node_hash(&a, &b));
    }
}
