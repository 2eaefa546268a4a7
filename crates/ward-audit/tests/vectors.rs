//! The published test vectors of `/work/shared/spec/audit-log.md` §5 (RFC 6962 trees from
//! transparency-dev/merkle, signed notes from golang.org/x/mod and C2SP, the sumdb checkpoint).

use ward_audit::note::{self, NoteError, Signer, Verifier};
use ward_audit::proof::{verify_consistency, verify_inclusion};
use ward_audit::tree::{Frontier, MemoryTree, root};
use ward_audit::{Checkpoint, CheckpointError, EMPTY_ROOT, Hash, leaf_hash};

/// transparency-dev/merkle `testonly/constants.go` `LeafInputs`.
const LEAVES: [&str; 8] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

/// `RootHashes` for sizes 0 to 8.
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

/// transparency-dev/merkle `proof/verify_test.go` `inclusionProofs`, with 0-based indices.
const INCLUSION: [(u64, u64, &[&str]); 4] = [
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
    (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
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

/// `consistencyProofs` of the same file.
const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
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
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hash(s: &str) -> Hash {
    Hash::try_from(unhex(s).as_slice()).unwrap()
}

fn leaf_hashes() -> Vec<Hash> {
    LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect()
}

fn tree() -> MemoryTree {
    MemoryTree::from_leaf_hashes(leaf_hashes())
}

#[test]
fn rfc6962_roots_for_sizes_0_to_8() {
    let leaves = leaf_hashes();
    let tree = tree();
    let mut frontier = Frontier::new();
    for (size, expected) in ROOTS.iter().enumerate() {
        let expected = hash(expected);
        assert_eq!(root(&leaves[..size]), expected, "definition at {size}");
        assert_eq!(frontier.root(), expected, "frontier at {size}");
        assert_eq!(tree.root_at(size as u64).unwrap(), expected, "stored nodes at {size}");
        if let Some(&leaf) = leaves.get(size) {
            frontier.push(leaf);
        }
    }
    assert_eq!(hash(ROOTS[0]), EMPTY_ROOT);
}

#[test]
fn inclusion_vectors_generate_and_verify() {
    let (tree, leaves) = (tree(), leaf_hashes());
    for (index, size, expected) in INCLUSION {
        let proof = tree.inclusion_proof(index, size).unwrap();
        assert_eq!(proof, expected.iter().map(|h| hash(h)).collect::<Vec<_>>(), "inclusion ({index}, {size})");
        let root = hash(ROOTS[size as usize]);
        let leaf = leaves[index as usize];
        assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));

        // transparency-dev/merkle's corruptInclusionProof probes.
        let some = hash("abacaba000000000000000000000000000000000000000000060061e00123456");
        let mut probes: Vec<(u64, u64, Hash, Vec<Hash>, Hash)> = vec![
            (index.wrapping_sub(1), size, leaf, proof.clone(), root),
            (index + 1, size, leaf, proof.clone(), root),
            (index ^ 2, size, leaf, proof.clone(), root),
            (index, size * 2, leaf, proof.clone(), root),
            (index, size / 2, leaf, proof.clone(), root),
            (index, size, leaf_hash(b"WrongLeaf"), proof.clone(), root),
            (index, size, leaf, proof.clone(), EMPTY_ROOT),
            (index, size, leaf, proof.clone(), some),
            (index, size, leaf, [&proof[..], &[root]].concat(), root),
            (index, size, leaf, [&[root], &proof[..]].concat(), root),
            (index, size, leaf, proof[..proof.len() - 1].to_vec(), root),
        ];
        if proof.len() > 1 {
            probes.push((index, size, leaf, [&[proof[0], some], &proof[1..]].concat(), root));
        }
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i].0[0] ^= 8;
            probes.push((index, size, leaf, bad, root));
        }
        for (i, s, l, p, r) in probes {
            assert!(verify_inclusion(i, s, &l, &p, &r).is_err(), "probe ({i}, {s}) {p:?} against ({index}, {size})");
        }
    }
}

#[test]
fn consistency_vectors_generate_and_verify() {
    let tree = tree();
    for (old, new, expected) in CONSISTENCY {
        let proof = tree.consistency_proof(old, new).unwrap();
        assert_eq!(proof, expected.iter().map(|h| hash(h)).collect::<Vec<_>>(), "consistency {old} -> {new}");
        let (r1, r2) = (hash(ROOTS[old as usize]), hash(ROOTS[new as usize]));
        assert_eq!(verify_consistency(old, new, &r1, &r2, &proof), Ok(()));

        // transparency-dev/merkle's corruptConsistencyProof probes.
        let wrong = leaf_hash(b"WrongRoot");
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (old - 1, new, r1, r2, proof.clone()),
            (old + 1, new, r1, r2, proof.clone()),
            (old ^ 2, new, r1, r2, proof.clone()),
            (old, new * 2, r1, r2, proof.clone()),
            (old, new / 2, r1, r2, proof.clone()),
            (old, new, wrong, r2, proof.clone()),
            (old, new, r1, wrong, proof.clone()),
            (old, new, r2, r1, proof.clone()),
            (old, new, r1, r2, vec![]),
            (old, new, r1, r2, [&proof[..], &[r1]].concat()),
            (old, new, r1, r2, [&proof[..], &[r2]].concat()),
            (old, new, r1, r2, [&[r1], &proof[..]].concat()),
            (old, new, r1, r2, [&[r2], &proof[..]].concat()),
            (old, new, r1, r2, [&[proof[0]], &proof[..]].concat()),
            (old, new, r1, r2, proof[..proof.len() - 1].to_vec()),
        ];
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i].0[0] ^= 16;
            probes.push((old, new, r1, r2, bad));
        }
        for (o, n, a, b, p) in probes {
            assert!(verify_consistency(o, n, &a, &b, &p).is_err(), "probe {o} -> {n} {p:?} against {old} -> {new}");
        }
    }
    // 1 -> 1: the trivial proof.
    assert_eq!(tree.consistency_proof(1, 1).unwrap(), vec![]);
    assert_eq!(verify_consistency(1, 1, &hash(ROOTS[1]), &hash(ROOTS[1]), &[]), Ok(()));
}

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
/// golang.org/x/mod `sumdb/note/note_test.go` `TestOpen`.
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

#[test]
fn go_note_signing_is_byte_exact() {
    let signer = Signer::from_private_key(PETER_SKEY).unwrap();
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.private_key(), PETER_SKEY);
    assert_eq!(signer.verifier().to_string(), PETER_VKEY);
    assert_eq!(signer.sign(PETER_TEXT).unwrap(), format!("{PETER_TEXT}\n{PETER_SIG}"));

    let verifier: Verifier = PETER_VKEY.parse().unwrap();
    assert_eq!(verifier, signer.verifier());
    let note = note::open(format!("{PETER_TEXT}\n{PETER_SIG}").as_bytes(), &[verifier]).unwrap();
    assert_eq!(note.text(), PETER_TEXT);
    assert_eq!(note.verified().len(), 1);
    assert_eq!(note.verified()[0].id, 0xc74f20a3);
}

#[test]
fn c2sp_example_note_verifies() {
    let verifier: Verifier = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k".parse().unwrap();
    let msg = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    let note = note::open(msg.as_bytes(), std::slice::from_ref(&verifier)).unwrap();
    assert_eq!(note.text(), "This is an example message.\n");
    let tampered = msg.replace("example message", "example massage");
    assert_eq!(
        note::open(tampered.as_bytes(), &[verifier]),
        Err(NoteError::InvalidSignature { name: "example.com/foo".into(), id: 0x530d903a })
    );
}

#[test]
fn go_open_cases() {
    let peter: Verifier = PETER_VKEY.parse().unwrap();
    let enoch: Verifier = ENOCH_VKEY.parse().unwrap();
    let both = format!("{PETER_TEXT}\n{PETER_SIG}{ENOCH_SIG}");

    // One trusted, one unknown: the unknown one is kept, unchecked.
    let note = note::open(both.as_bytes(), std::slice::from_ref(&peter)).unwrap();
    assert_eq!(note.verified().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["PeterNeumann"]);
    assert_eq!(note.unverified().iter().map(|s| (s.name.as_str(), s.id)).collect::<Vec<_>>(), [("EnochRoot", 0xaf0cfe78)]);
    // Both trusted.
    assert_eq!(note::open(both.as_bytes(), &[peter.clone(), enoch.clone()]).unwrap().verified().len(), 2);
    // None trusted.
    assert_eq!(note::open(both.as_bytes(), &[]), Err(NoteError::NoTrustedSignature));
    // The same (name, id) twice among the trusted keys.
    let enoch_only = format!("{PETER_TEXT}\n{ENOCH_SIG}");
    let list = [enoch.clone(), peter.clone(), enoch.clone()];
    assert_eq!(note::open(enoch_only.as_bytes(), &list), Err(NoteError::AmbiguousKey { name: "EnochRoot".into(), id: 0xaf0cfe78 }));
    assert!(note::open(format!("{PETER_TEXT}\n{PETER_SIG}").as_bytes(), &list).is_ok());
    // Too many signatures.
    let many = format!("{PETER_TEXT}\n{}", PETER_SIG.repeat(101));
    assert!(matches!(note::open(many.as_bytes(), std::slice::from_ref(&peter)), Err(NoteError::Malformed(_))));
    // A known key's bad signature rejects the note.
    let (head, tail) = PETER_SIG.split_at(60);
    let bad = format!("{PETER_TEXT}\n{head}ABCD{tail}");
    assert_eq!(
        note::open(bad.as_bytes(), std::slice::from_ref(&peter)),
        Err(NoteError::InvalidSignature { name: "PeterNeumann".into(), id: 0xc74f20a3 })
    );
    // Duplicates: each key listed once; an unknown key's bad signature is not our business.
    let (head, tail) = ENOCH_SIG.split_at(60);
    let dup = format!("{PETER_TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{head}ABCD{tail}");
    let note = note::open(dup.as_bytes(), std::slice::from_ref(&peter)).unwrap();
    assert_eq!(note.verified().len(), 1);
    assert_eq!(note.unverified().len(), 2);
    // Syntax errors.
    for msg in [
        PETER_TEXT.to_owned(),
        format!("{PETER_TEXT}\n"),
        format!("{PETER_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{PETER_TEXT}\n{PETER_SIG}"),
        format!("{PETER_TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
        format!("{PETER_TEXT}\n{PETER_SIG}Unexpected line.\n"),
    ] {
        assert!(matches!(note::open(msg.as_bytes(), std::slice::from_ref(&peter)), Err(NoteError::Malformed(_))), "{msg:?}");
    }
    let invalid_utf8 = [b"\xff", format!("{PETER_TEXT}\n{PETER_SIG}").as_bytes()].concat();
    assert!(matches!(note::open(&invalid_utf8, &[peter]), Err(NoteError::Malformed(_))));
}

#[test]
fn go_key_manglings_are_refused() {
    // golang.org/x/mod TestNewVerifier / TestNewSigner: no proper substring and no single
    // incremented byte of a valid key is a valid key.
    for key in [PETER_VKEY, PETER_SKEY] {
        let parse = |s: &str| if key == PETER_VKEY { s.parse::<Verifier>().is_ok() } else { Signer::from_private_key(s).is_ok() };
        assert!(parse(key));
        let b = key.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if (i, j) != (0, b.len()) {
                    assert!(!parse(&key[i..j]), "{:?}", &key[i..j]);
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] += 1;
            assert!(!parse(&String::from_utf8(m).unwrap()), "byte {i}");
        }
    }
    // Wrong key length and unknown algorithm, each with a matching key ID.
    assert!("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==".parse::<Verifier>().is_err());
    assert_eq!(
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".parse::<Verifier>(),
        Err(NoteError::UnsupportedAlgorithm(0x65))
    );
}

#[test]
fn sumdb_checkpoint_body_signs_and_parses() {
    // The golden body of golang.org/x/mod `sumdb/tlog/note_test.go`, signed here with the Go
    // example key and opened again.
    let body = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
    let signer = Signer::from_private_key(PETER_SKEY).unwrap();
    let root: Hash = "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=".parse().unwrap();
    let signed = Checkpoint::sign("go.sum database tree", 123_456_789_012, root, &signer).unwrap();
    assert_eq!(signed.note(), signer.sign(body).unwrap());

    let parsed = Checkpoint::parse(signed.note().as_bytes(), "go.sum database tree", &signer.verifier()).unwrap();
    assert_eq!((parsed.origin(), parsed.size(), *parsed.root()), ("go.sum database tree", 123_456_789_012, root));
    assert_eq!(parsed, signed);

    assert_eq!(
        Checkpoint::parse(signed.note().as_bytes(), "sum.golang.org", &signer.verifier()),
        Err(CheckpointError::OriginMismatch { expected: "sum.golang.org".into(), found: "go.sum database tree".into() })
    );
    let other = Signer::generate("PeterNeumann").unwrap();
    assert_eq!(
        Checkpoint::parse(signed.note().as_bytes(), "go.sum database tree", &other.verifier()),
        Err(NoteError::NoTrustedSignature.into())
    );
    // An unsigned-but-valid body, or a body with a forged size, never becomes a Checkpoint.
    let forged = signed.note().replace("123456789012", "123456789013");
    assert!(matches!(
        Checkpoint::parse(forged.as_bytes(), "go.sum database tree", &signer.verifier()),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
    // A validly signed note that is not a checkpoint.
    let not_checkpoint = signer.sign("go.sum database tree\n0123\nAAAA\n").unwrap();
    assert!(matches!(
        Checkpoint::parse(not_checkpoint.as_bytes(), "go.sum database tree", &signer.verifier()),
        Err(CheckpointError::Malformed(_))
    ));
}
