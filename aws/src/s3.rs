//! S3 as rollcall's blob store (staged plans, undo pages, reports) and as the place bundles are read from
//! without a local copy: a zip by ranged reads behind `Read + Seek`, loose files by listing a prefix. Keys are
//! the same as the local blob folder's: `staged/{tenant}/{batch}/...`, `undo/...`, `reports/...`.

use crate::bridge::Bridge;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use rollcall::blob::{BlobEntry, BlobError, BlobResult, BlobStore, check_key};
use rollcall::read::bundle::{EntryKind, Listed, LooseFiles};
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes read per ranged request: few requests for a large zip, little memory.
const BLOCK: u64 = 8 << 20;

/// Parts of a multipart upload (S3 wants at least 5 MiB per part but the last).
const PART: usize = 8 << 20;

fn backend(doing: &'static str, key: &str, err: impl std::fmt::Display) -> BlobError {
    BlobError::Backend {
        doing,
        key: key.to_string(),
        reason: err.to_string(),
    }
}

/// The error's whole chain: the SDK's top message alone ("service error") says little.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A bucket as a blob store.
#[derive(Clone)]
pub struct S3Blobs {
    client: Client,
    bridge: Bridge,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: Client, bridge: Bridge, bucket: &str) -> S3Blobs {
        S3Blobs {
            client,
            bridge,
            bucket: bucket.to_string(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// A stream of one object, read by ranges as it is consumed (`Read + Seek`); `None` when there is none.
    pub fn object(&self, key: &str) -> BlobResult<Option<S3Object>> {
        let head = self.bridge.run(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        let size = match head {
            Ok(out) => out.content_length.unwrap_or(0).max(0) as u64,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => return Ok(None),
            Err(e) => return Err(backend("reading", key, describe(&e))),
        };
        Ok(Some(S3Object {
            client: self.client.clone(),
            bridge: self.bridge.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            size,
            pos: 0,
            block: Vec::new(),
            block_start: 0,
        }))
    }

    /// The objects under `prefix` as the loose files of a bundle.
    pub fn folder(&self, prefix: &str) -> S3Folder {
        S3Folder {
            blobs: self.clone(),
            prefix: prefix.to_string(),
        }
    }

    /// One page of a listing under `prefix` (with `/` as delimiter when `folders`): objects and sub-folders.
    fn list_page(
        &self,
        prefix: &str,
        folders: bool,
        token: Option<String>,
    ) -> BlobResult<(Vec<BlobEntry>, Vec<String>, Option<String>)> {
        let mut call = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(token);
        if folders {
            call = call.delimiter("/");
        }
        let out = self
            .bridge
            .run(call.send())
            .map_err(|e| backend("listing", prefix, describe(&e)))?;
        let objects = out
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                Some(BlobEntry {
                    key: o.key?,
                    size: o.size.unwrap_or(0).max(0) as u64,
                })
            })
            .collect();
        let subfolders = out
            .common_prefixes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.prefix)
            .collect();
        let next = match out.is_truncated {
            Some(true) => out.next_continuation_token,
            _ => None,
        };
        Ok((objects, subfolders, next))
    }

    fn put_multipart(&self, key: &str, first: Vec<u8>, reader: &mut dyn Read) -> BlobResult<u64> {
        let started = self
            .bridge
            .run(
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .map_err(|e| backend("writing", key, describe(&e)))?;
        let upload = started
            .upload_id
            .ok_or_else(|| backend("writing", key, "S3 gave no upload id"))?;
        let mut parts = Vec::new();
        let mut total = 0u64;
        let mut part = first;
        loop {
            let number = parts.len() as i32 + 1;
            total += part.len() as u64;
            let sent = self
                .bridge
                .run(
                    self.client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(&upload)
                        .part_number(number)
                        .body(ByteStream::from(part))
                        .send(),
                )
                .map_err(|e| backend("writing", key, describe(&e)))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(sent.e_tag)
                    .build(),
            );
            part = read_part(reader).map_err(|e| backend("reading what to write to", key, e))?;
            if part.is_empty() {
                break;
            }
        }
        self.bridge
            .run(
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send(),
            )
            .map_err(|e| backend("writing", key, describe(&e)))?;
        Ok(total)
    }
}

/// Up to one part's bytes from a reader.
fn read_part(reader: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut part = Vec::with_capacity(PART);
    reader.take(PART as u64).read_to_end(&mut part)?;
    Ok(part)
}

impl BlobStore for S3Blobs {
    fn put(&self, key: &str, bytes: &[u8]) -> BlobResult<()> {
        check_key(key)?;
        self.bridge
            .run(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(bytes.to_vec()))
                    .send(),
            )
            .map_err(|e| backend("writing", key, describe(&e)))?;
        Ok(())
    }

    fn put_from(&self, key: &str, reader: &mut dyn Read) -> BlobResult<u64> {
        check_key(key)?;
        let first = read_part(reader).map_err(|e| backend("reading what to write to", key, e))?;
        if first.len() < PART {
            let n = first.len() as u64;
            self.put(key, &first)?;
            return Ok(n);
        }
        self.put_multipart(key, first, reader)
    }

    fn get(&self, key: &str) -> BlobResult<Option<Vec<u8>>> {
        check_key(key)?;
        let got = self.bridge.run(
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        let out = match got {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(backend("reading", key, describe(&e))),
        };
        let bytes = self
            .bridge
            .run(out.body.collect())
            .map_err(|e| backend("reading", key, e))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    fn open(&self, key: &str) -> BlobResult<Option<Box<dyn Read + Send>>> {
        check_key(key)?;
        Ok(self
            .object(key)?
            .map(|o| Box::new(o) as Box<dyn Read + Send>))
    }

    fn list(&self, prefix: &str) -> BlobResult<Vec<BlobEntry>> {
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let (objects, _, next) = self.list_page(prefix, false, token)?;
            found.extend(objects);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn delete_prefix(&self, prefix: &str) -> BlobResult<()> {
        let keys: Vec<String> = self.list(prefix)?.into_iter().map(|b| b.key).collect();
        // DeleteObjects takes at most 1,000 keys a call.
        for batch in keys.chunks(1_000) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| backend("deleting", prefix, e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| backend("deleting", prefix, e))?;
            let out = self
                .bridge
                .run(
                    self.client
                        .delete_objects()
                        .bucket(&self.bucket)
                        .delete(delete)
                        .send(),
                )
                .map_err(|e| backend("deleting", prefix, describe(&e)))?;
            if let Some(failed) = out.errors.filter(|e| !e.is_empty()) {
                let first = failed
                    .first()
                    .and_then(|e| e.key.clone())
                    .unwrap_or_default();
                return Err(backend(
                    "deleting",
                    &first,
                    format!("{} objects could not be deleted", failed.len()),
                ));
            }
        }
        Ok(())
    }
}

/// One object, read by ranged requests of [`BLOCK`] bytes as the reader moves: a zip in a bucket opens with no
/// local copy, the zip reader seeking to its central directory and back.
pub struct S3Object {
    client: Client,
    bridge: Bridge,
    bucket: String,
    key: String,
    size: u64,
    pos: u64,
    block: Vec<u8>,
    block_start: u64,
}

impl S3Object {
    pub fn size(&self) -> u64 {
        self.size
    }

    fn fetch(&mut self, at: u64) -> io::Result<()> {
        let end = (at + BLOCK).min(self.size) - 1;
        let out = self
            .bridge
            .run(
                self.client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .range(format!("bytes={at}-{end}"))
                    .send(),
            )
            .map_err(|e| io::Error::other(format!("reading {}: {}", self.key, describe(&e))))?;
        let bytes = self
            .bridge
            .run(out.body.collect())
            .map_err(|e| io::Error::other(format!("reading {}: {e}", self.key)))?;
        self.block = bytes.into_bytes().to_vec();
        self.block_start = at;
        Ok(())
    }
}

impl Read for S3Object {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let in_block =
            self.pos >= self.block_start && self.pos < self.block_start + self.block.len() as u64;
        if !in_block {
            self.fetch(self.pos)?;
        }
        let offset = (self.pos - self.block_start) as usize;
        let available = &self.block[offset..];
        if available.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ended before its size", self.key),
            ));
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for S3Object {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the object",
            )
        })?;
        Ok(self.pos)
    }
}

/// The objects under a prefix as a bundle's loose files (an SFTP client's folder of CSVs).
pub struct S3Folder {
    blobs: S3Blobs,
    prefix: String,
}

impl LooseFiles for S3Folder {
    fn list(&self, folder: &str) -> io::Result<Vec<Listed>> {
        let prefix = if folder.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{folder}/", self.prefix)
        };
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let (objects, folders, next) = self
                .blobs
                .list_page(&prefix, true, token)
                .map_err(|e| io::Error::other(e.to_string()))?;
            for o in objects {
                let name = o.key[prefix.len()..].to_string();
                if !name.is_empty() {
                    names.push(Listed {
                        name,
                        size: o.size,
                        kind: EntryKind::File,
                    });
                }
            }
            for f in folders {
                names.push(Listed {
                    name: f[prefix.len()..].trim_end_matches('/').to_string(),
                    size: 0,
                    kind: EntryKind::Folder,
                });
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        names.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(names)
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>> {
        let key = format!("{}{path}", self.prefix);
        match self.blobs.object(&key) {
            Ok(Some(object)) => Ok(Box::new(object)),
            Ok(None) => Err(io::Error::new(io::ErrorKind::NotFound, key)),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }
}
