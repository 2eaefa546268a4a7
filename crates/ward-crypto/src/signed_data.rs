//! CMS SignedData (RFC 5652) with the content attached, as Apple expects of a signed
//! configuration profile: one signer identified by issuer and serial number, its certificate
//! included, signed attributes content-type, message-digest (SHA-256) and signing-time.
//!
//! The structures and their DER come from RustCrypto's `cms`, `der` and `x509-cert`; the
//! digest and the signature (ECDSA P-256 or RSA PKCS#1 v1.5, both over SHA-256) from
//! aws-lc-rs, the one crypto library.

use std::time::SystemTime;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos};
use der::asn1::{Any, ObjectIdentifier, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// Why a signer could not be made or could not sign. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[error("profile signing: {0}")]
pub struct SignError(pub String);

fn err(what: impl std::fmt::Display) -> SignError {
    SignError(what.to_string())
}

enum SigningKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A certificate and its private key, ready to sign.
pub struct CmsSigner {
    cert: Certificate,
    key: SigningKey,
}

impl std::fmt::Debug for CmsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmsSigner").field("subject", &self.cert.tbs_certificate.subject.to_string()).finish_non_exhaustive()
    }
}

impl CmsSigner {
    /// A signer from a PEM certificate and a PEM private key: PKCS#8 (`PRIVATE KEY`, ECDSA
    /// P-256 or RSA), SEC 1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`). The key must
    /// be the certificate's.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CmsSigner, SignError> {
        let (label, cert_der) = der::pem::decode_vec(cert_pem).map_err(|_| err("the certificate is not PEM"))?;
        if label != "CERTIFICATE" {
            return Err(err(format!("the certificate file holds a {label}, not a CERTIFICATE")));
        }
        let cert = Certificate::from_der(&cert_der).map_err(|e| err(format!("the certificate is not valid X.509: {e}")))?;
        let (label, key_der) = der::pem::decode_vec(key_pem).map_err(|_| err("the private key is not PEM"))?;
        let key_der = zeroize::Zeroizing::new(key_der);
        let ec = |der: &[u8]| EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der).map(SigningKey::Ecdsa);
        let key = match label {
            "PRIVATE KEY" => ec(&key_der).or_else(|_| RsaKeyPair::from_pkcs8(&key_der).map(SigningKey::Rsa)),
            "EC PRIVATE KEY" => ec(&key_der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&key_der).map(SigningKey::Rsa),
            other => return Err(err(format!("the key file holds a {other}, not a private key"))),
        }
        .map_err(|_| err("the private key is neither ECDSA P-256 nor RSA, or is malformed"))?;
        let public = match &key {
            SigningKey::Ecdsa(k) => k.public_key().as_ref().to_vec(),
            SigningKey::Rsa(k) => k.public_key().as_ref().to_vec(),
        };
        if cert.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes() != public.as_slice() {
            return Err(err("the private key does not belong to the certificate"));
        }
        Ok(CmsSigner { cert, key })
    }

    /// `content` wrapped in a DER-encoded CMS SignedData ContentInfo, signed at `at`.
    pub fn sign_attached(&self, content: &[u8], at: SystemTime) -> Result<Vec<u8>, SignError> {
        let sha256 = AlgorithmIdentifierOwned { oid: ID_SHA256, parameters: None };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, content);
        let time = UtcTime::from_system_time(at).map_err(|_| err("the signing time is outside 1950-2049"))?;
        let attr = |oid, value: Any| -> Result<Attribute, SignError> {
            Ok(Attribute { oid, values: SetOfVec::try_from(vec![value]).map_err(err)? })
        };
        let signed_attrs = SetOfVec::try_from(vec![
            attr(ID_CONTENT_TYPE, Any::encode_from(&ID_DATA).map_err(err)?)?,
            attr(ID_MESSAGE_DIGEST, Any::encode_from(&OctetString::new(digest.as_ref()).map_err(err)?).map_err(err)?)?,
            attr(ID_SIGNING_TIME, Any::encode_from(&time).map_err(err)?)?,
        ])
        .map_err(err)?;
        // The signature covers the attributes' DER with the SET OF tag (RFC 5652 5.4), not the
        // [0] IMPLICIT tag they carry inside SignerInfo.
        let to_sign = signed_attrs.to_der().map_err(err)?;
        let (signature_algorithm, sig) = match &self.key {
            SigningKey::Ecdsa(k) => (
                AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA256, parameters: None },
                k.sign(&SystemRandom::new(), &to_sign).map_err(|_| err("ECDSA signing failed"))?.as_ref().to_vec(),
            ),
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), &to_sign, &mut sig).map_err(|_| err("RSA signing failed"))?;
                (AlgorithmIdentifierOwned { oid: SHA256_WITH_RSA, parameters: Some(Any::null()) }, sig)
            }
        };
        let tbs = &self.cert.tbs_certificate;
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer.clone(),
                serial_number: tbs.serial_number.clone(),
            }),
            digest_alg: sha256.clone(),
            signed_attrs: Some(signed_attrs),
            signature_algorithm,
            signature: OctetString::new(sig).map_err(err)?,
            unsigned_attrs: None,
        };
        let signed = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![sha256]).map_err(err)?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: Some(Any::encode_from(&OctetString::new(content).map_err(err)?).map_err(err)?),
            },
            certificates: Some(CertificateSet(SetOfVec::try_from(vec![CertificateChoices::Certificate(self.cert.clone())]).map_err(err)?)),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(err)?),
        };
        let info = ContentInfo { content_type: ID_SIGNED_DATA, content: Any::encode_from(&signed).map_err(err)? };
        info.to_der().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(alg: &'static rcgen::SignatureAlgorithm) -> CmsSigner {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["profiles.example.org".into()]).unwrap().self_signed(&key).unwrap();
        CmsSigner::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }

    #[test]
    fn signs_with_ecdsa_and_the_structure_parses_back() {
        let s = signer(&rcgen::PKCS_ECDSA_P256_SHA256);
        let der = s.sign_attached(b"<plist/>", SystemTime::now()).unwrap();
        let info = ContentInfo::from_der(&der).unwrap();
        assert_eq!(info.content_type, ID_SIGNED_DATA);
        let sd: SignedData = info.content.decode_as().unwrap();
        let content: OctetString = sd.encap_content_info.econtent.unwrap().decode_as().unwrap();
        assert_eq!(content.as_bytes(), b"<plist/>");
        let si = sd.signer_infos.0.get(0).unwrap();
        assert_eq!(si.signed_attrs.as_ref().unwrap().len(), 3);
        assert_eq!(si.signature_algorithm.oid, ECDSA_WITH_SHA256);
    }

    #[test]
    fn a_key_of_another_certificate_or_garbage_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.example".into()]).unwrap().self_signed(&key).unwrap();
        let e = CmsSigner::from_pem(cert.pem().as_bytes(), other.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        assert!(CmsSigner::from_pem(b"garbage", key.serialize_pem().as_bytes()).is_err());
        assert!(CmsSigner::from_pem(key.serialize_pem().as_bytes(), key.serialize_pem().as_bytes()).is_err());
    }
}
