/*
 * error.h - setting the calling thread's detailed error message (read by tl_last_error()).
 */
#ifndef TL_ERROR_H
#define TL_ERROR_H

#include "tallystore.h"

/* Records a message for this thread and returns code, so a failure reads
 *     return tl_error(TL_ECORRUPT, "%s: bad block checksum at offset %llu", path, off);
 * The message should say what went wrong and what to do, naming the file, key or limit. */
int tl_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties this thread's message: before a callback that may fail without setting one, so that
 * a stale message of an earlier failure is not reported as its reason. */
void tl_error_clear(void);

#endif
