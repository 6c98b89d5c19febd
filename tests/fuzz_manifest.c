/*
 * fuzz_manifest.c - libFuzzer target for the manifest reader (storage/manifest.c): decoding
 * version edits, replaying them into a state with their consistency checks, and CURRENT.
 *
 * The input is read three ways: as a manifest file by tl_manifest_read (what tallyctl does);
 * as MANIFEST-000005 named by a valid CURRENT, opened by tl_manifest_open (what the engine
 * does: replay, then a fresh manifest holding one snapshot); and as the CURRENT of a directory
 * with no manifest. The first two run again with the header and record checksums recomputed
 * (see fuzz_storage.h), so that mutations reach the edit decoder and the replay checks.
 *
 * Besides crashes, sanitizer reports and leaks, the target checks: a failure returns a
 * negative code with a message; whatever tallyctl cannot read the engine does not open; an
 * opened state lists each file once, on a level that exists, sorted by level and number, and
 * a next file number past the manifest it came from; closing and reopening (which reads back
 * the snapshot the open wrote) gives the same state with the next file number one higher; and
 * a CURRENT that names a missing manifest never opens.
 *
 * Build: see tests/test_fuzz_manifest.sh (clang -fsanitize=fuzzer,address,undefined with the
 * sources of storage/).
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coding.h"
#include "fuzz_storage.h"
#include "manifest.h"

/* Header (manifest.h): magic and version, then their masked CRC32C; records: masked CRC32C of
 * the payload, then its length. */
#define HEADER_BYTES 16
/* The number the input's manifest file is given. */
#define INPUT_NUMBER 5
#define INPUT_NAME   "MANIFEST-000005"

static char open_dir[FUZZ_PATH_BYTES], current_dir[FUZZ_PATH_BYTES];
static char read_path[FUZZ_PATH_BYTES];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_setup("fuzz-manifest");
    fuzz_path(open_dir, "open");
    fuzz_path(current_dir, "current");
    fuzz_path(read_path, INPUT_NAME);
    fuzz_check(mkdir(open_dir, 0755) == 0 && mkdir(current_dir, 0755) == 0, "make directories");
    return 0;
}

/* Removes every file of dir (what an open left there). */
static void empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    fuzz_check(d != NULL, "open a scratch directory");
    struct dirent *de;
    char path[2 * FUZZ_PATH_BYTES];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        fuzz_check(unlink(path) == 0, "remove a scratch file");
    }
    closedir(d);
}

static const struct fuzz_framing framing = {
    .header_bytes = HEADER_BYTES, .crc_covers_length = false, .min_len = 0};

static bool repair(uint8_t *f, size_t size)
{
    return fuzz_repair_framed(&framing, f, size);
}

static int count_edit(void *arg, uint64_t offset, const struct tl_version_edit *e)
{
    (void)e;
    fuzz_check(offset >= HEADER_BYTES, "an edit lies after the header");
    (*(size_t *)arg)++;
    return 0;
}

static bool same_file(const struct tl_file_meta *a, const struct tl_file_meta *b)
{
    return a->level == b->level && a->number == b->number && a->size_bytes == b->size_bytes &&
           a->entries == b->entries && a->raw_bytes == b->raw_bytes &&
           a->expiring_entries == b->expiring_entries && a->expire_p50_ms == b->expire_p50_ms &&
           tl_key_cmp(a->smallest, a->smallest_len, b->smallest, b->smallest_len) == 0 &&
           a->smallest_len == b->smallest_len && a->largest_len == b->largest_len &&
           tl_key_cmp(a->largest, a->largest_len, b->largest, b->largest_len) == 0;
}

static void check_state(const struct tl_version_edit *s)
{
    fuzz_check(s->next_file_number > INPUT_NUMBER, "the next file number is past the manifest's");
    fuzz_check(s->n_deleted == 0, "a state deletes nothing");
    for (size_t i = 0; i < s->n_added; i++) {
        const struct tl_file_meta *f = &s->added[i];
        fuzz_check(f->level >= 0 && f->level < TL_MAX_LEVELS, "a file is on a level that exists");
        if (i > 0) {
            const struct tl_file_meta *p = &s->added[i - 1];
            fuzz_check(p->level < f->level || (p->level == f->level && p->number < f->number),
                       "files are sorted by level and number");
        }
        for (size_t j = 0; j < i; j++)
            fuzz_check(s->added[j].number != f->number, "a file is listed once");
    }
}

/* Opens the input as the current manifest, then reopens what the open wrote. */
static void open_manifest(const uint8_t *data, size_t size, int read_rc)
{
    static const char current[] = INPUT_NAME "\n";
    char path[2 * FUZZ_PATH_BYTES];
    empty_dir(open_dir);
    snprintf(path, sizeof path, "%s/%s", open_dir, INPUT_NAME);
    fuzz_write_file(path, data, size);
    snprintf(path, sizeof path, "%s/CURRENT", open_dir);
    fuzz_write_file(path, (const uint8_t *)current, strlen(current));

    struct tl_manifest *m;
    struct tl_version_edit first, again;
    int rc = tl_manifest_open(open_dir, &m, &first);
    if (rc < 0) {
        fuzz_check_error(rc, "open fails with a negative code");
        return;
    }
    fuzz_check(read_rc == 0, "a manifest that opens reads");
    fuzz_check(strcmp(tl_manifest_name(m), INPUT_NAME) != 0, "an open writes a new manifest");
    check_state(&first);
    tl_manifest_close(m);

    rc = tl_manifest_open(open_dir, &m, &again);
    fuzz_check(rc == 0, "the manifest an open wrote opens");
    check_state(&again);
    fuzz_check(again.log_number == first.log_number && again.last_seq == first.last_seq &&
                   again.next_file_number == first.next_file_number + 1 &&
                   again.n_added == first.n_added,
               "a reopened state is the same");
    for (size_t i = 0; i < first.n_added; i++)
        fuzz_check(same_file(&first.added[i], &again.added[i]), "a reopened file is the same");
    tl_manifest_close(m);
    tl_edit_free(&first);
    tl_edit_free(&again);
}

static void read_manifest(const uint8_t *data, size_t size)
{
    size_t edits = 0;
    fuzz_write_file(read_path, data, size);
    int rc = tl_manifest_read(read_path, count_edit, &edits);
    if (rc < 0)
        fuzz_check_error(rc, "read fails with a negative code");
    fuzz_check(rc <= 0, "read returns 0 or an error when the callback does");
    open_manifest(data, size, rc);
}

/* The input as CURRENT of a directory without any manifest: it must not open. */
static void read_current(const uint8_t *data, size_t size)
{
    char path[2 * FUZZ_PATH_BYTES];
    empty_dir(current_dir);
    snprintf(path, sizeof path, "%s/CURRENT", current_dir);
    fuzz_write_file(path, data, size);
    struct tl_manifest *m;
    struct tl_version_edit state;
    int rc = tl_manifest_open(current_dir, &m, &state);
    fuzz_check_error(rc, "a CURRENT naming a missing manifest does not open");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_current(data, size);
    fuzz_as_is_and_repaired(data, size, repair, read_manifest);
    return 0;
}
