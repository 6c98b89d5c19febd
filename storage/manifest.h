/*
 * manifest.h - the manifest: a log of version edits (files added to and removed from levels,
 * the WAL segment recovery starts from, the next file number, the last sequence number),
 * made current by an atomic rename of CURRENT.
 *
 * DIR/CURRENT holds the name of the live manifest ("MANIFEST-000012\n"); it is replaced by
 * writing CURRENT.tmp, syncing it and renaming it over CURRENT, then syncing the directory.
 * A manifest file is:
 *     header  8 bytes "TALLYMAN", 4 bytes format version (1), 4 bytes masked CRC32C of the 12
 *     records, each: 4 bytes masked CRC32C of the payload, 4 bytes payload length, payload
 * A payload is one version edit, a sequence of tagged fields (tag varint, then):
 *     1 log_number varint        2 next_file_number varint      3 last_seq varint
 *     4 add file: level varint, number varint, size varint, entries varint, raw_bytes varint,
 *       smallest (varint length + bytes), largest (varint length + bytes),
 *       expiring_entries varint, expire_p50_ms varint
 *     5 delete file: level varint, number varint
 * A manifest is rewritten as one snapshot edit when it passes TL_MANIFEST_ROLL_BYTES.
 * A torn last record (a crash during an append) is ignored; any other bad record is
 * corruption, reported with the file and offset.
 */
#ifndef TL_MANIFEST_H
#define TL_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tallystore.h"

#define TL_MANIFEST_MAGIC      "TALLYMAN"
#define TL_MANIFEST_VERSION    1
#define TL_MANIFEST_ROLL_BYTES (4u << 20)

/* What the manifest knows of one SSTable. Keys are owned (malloc'd) by the struct. */
struct tl_file_meta {
    int level;
    uint64_t number;
    uint64_t size_bytes;
    uint64_t entries;
    uint64_t raw_bytes;
    uint8_t *smallest;
    size_t smallest_len;
    uint8_t *largest;
    size_t largest_len;
    uint64_t expiring_entries; /* entries that carry an expiry */
    int64_t expire_p50_ms;     /* median expiry among them; 0 if none */
};

struct tl_file_ref {
    int level;
    uint64_t number;
};

struct tl_version_edit {
    bool has_log_number;
    uint64_t log_number; /* WAL segments below this number are no longer needed */
    bool has_next_file;
    uint64_t next_file_number;
    bool has_last_seq;
    uint64_t last_seq;
    struct tl_file_meta *added;
    size_t n_added, cap_added;
    struct tl_file_ref *deleted;
    size_t n_deleted, cap_deleted;
};

void tl_edit_init(struct tl_version_edit *e);
/* Copies meta (and its keys) into the edit. */
int tl_edit_add_file(struct tl_version_edit *e, const struct tl_file_meta *meta);
int tl_edit_delete_file(struct tl_version_edit *e, int level, uint64_t number);
void tl_edit_free(struct tl_version_edit *e);

/* Copies src's keys into dst (dst's old keys are not freed). */
int tl_file_meta_copy(struct tl_file_meta *dst, const struct tl_file_meta *src);
void tl_file_meta_free(struct tl_file_meta *m);

struct tl_manifest;

/* Opens the manifest named by DIR/CURRENT, or creates a new database's manifest when there is
 * no CURRENT. *state receives the net result of every edit: the live files (in added), the
 * log number, next file number and last sequence number. Caller frees it with tl_edit_free. */
int tl_manifest_open(const char *dir, struct tl_manifest **out, struct tl_version_edit *state);

/* Appends edit, syncs it, and applies it to the manifest's own copy of the state. Rolls to a new
 * manifest file (snapshot, then CURRENT renamed) when the file grows past the bound. */
int tl_manifest_log(struct tl_manifest *m, const struct tl_version_edit *edit);

/* The manifest's file name ("MANIFEST-000012"), for checkpoints. */
const char *tl_manifest_name(const struct tl_manifest *m);

void tl_manifest_close(struct tl_manifest *m);

/* For tallyctl manifest: calls fn for each edit of the manifest file at path, in order. */
typedef int (*tl_manifest_edit_fn)(void *arg, uint64_t offset, const struct tl_version_edit *e);
int tl_manifest_read(const char *path, tl_manifest_edit_fn fn, void *arg);

#endif
