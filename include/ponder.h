/*
 * ponder.h: the C API of ponder, offline on-device semantic search.
 *
 * This header is the contract of libponder (src/capi.rs implements it). C99; usable from C++,
 * Swift (a module map or bridging header), C# (P/Invoke), Qt and Electron (N-API/ffi).
 *
 * Conventions (after sqlite's C API)
 * ----------------------------------
 * - A ponder_engine* is an opaque handle on one index directory, made by ponder_open and
 *   destroyed once, by its owner, with ponder_close.
 * - Every function but ponder_version, ponder_errstr and ponder_free_string returns an int:
 *   PONDER_OK (0) or one of the PONDER_ERR_* codes below.
 * - `char** err` (last argument, may be NULL): on failure *err receives a message in English,
 *   which the caller frees with ponder_free_string; on success *err is set to NULL.
 * - Output strings (`char** ..._json`) are set to NULL on entry and, on success, receive a
 *   NUL-terminated UTF-8 JSON text that the caller owns and frees with ponder_free_string.
 *   Never free them with free(): ponder's allocator is not necessarily the caller's.
 * - Input strings are borrowed for the duration of the call and must be NUL-terminated UTF-8.
 *   NULL where a value is required, invalid UTF-8, malformed JSON and unknown JSON fields all
 *   return PONDER_ERR_INVALID with a message; none of them crashes.
 * - No Rust panic crosses this boundary: one is reported as PONDER_ERR_INTERNAL.
 * - Thread safety: a handle may be used from any number of threads at once. Searches run in
 *   parallel; indexing calls (ponder_index, ponder_update, ponder_remove) on one index are
 *   serialised (a second waits for the first), and searches see each commit of a running job.
 *   Only ponder_close must not overlap any other call on the same handle. While another
 *   handle or another process writes the same index, an indexing call fails at once with
 *   PONDER_ERR_INVALID ("another ponder process is writing the index ..."): share one handle.
 *
 * JSON shapes
 * -----------
 * Search request (the body `ponder serve` takes; only "query" or "queries" is required):
 *   {"query": "how long to proof dough", "queries": ["..."], "k": 10,
 *    "mode": "hybrid|dense|lexical|late", "fusion": "zscore|weighted|rrf", "dense_weight": 0.6, "rrf_k": 60,
 *    "candidates": 100, "exact": false, "long_query": "truncate|split",
 *    "prf_dense": 0, "prf_dense_beta": 0.5, "rm3": 0, "rm3_terms": 10, "rm3_weight": 0.5,
 *    "rerank": false, "rerank_top": 20, "rerank_weight": 0.3, "rerank_min_spread": 1.0,
 *    "path": ["notes", "*.md", "!drafts"], "type": ["pdf|md|html|code|text"],
 *    "after": "YYYY-MM-DD", "before": "YYYY-MM-DD",
 *    "per_file": 2, "files": false, "dedup": true, "explain": false}
 * Search result: {"hits": [{"path": "/abs/file.md", "score": 0.83, "start_line": 3,
 *   "end_line": 17, "heading": "Schedule" or null, "text": "...", "highlights": [[start, end],
 *   ...] (byte ranges in text), "chunk_id": 12, "page": 7 or null, "page_end": 8 or null
 *   (PDFs), "also_in": ["/abs/copy.md", ...] (other files with the same text)}, ...]} (the
 *   objects of `ponder search --json`; with "explain", also "dense_score", "dense_rank",
 *   "lexical_score", "lexical_rank", "fused_score", "rerank_score", null where absent).
 * PDFs are read in process: a library host cannot be re-executed as ponder's isolated
 *   extraction helper, so a PDF that loops blocks that indexing call.
 *
 * Building a program against libponder
 * -------------------------------------
 *   cargo build --release            # writes target/release/libponder.so (.dylib on macOS,
 *                                    # ponder.dll + ponder.dll.lib on Windows)
 *   cc -std=c99 -Wall -I include app.c -L target/release -lponder \
 *      -Wl,-rpath,"$PWD/target/release" -o app
 *   ./app
 * The library is self-contained: it embeds the default embedding model and reranker and needs
 * no other file at run time. Ship libponder next to the application (or set the rpath /
 * install name accordingly). Minimal use:
 *
 *   ponder_engine* db = NULL; char* err = NULL; char* hits = NULL;
 *   if (ponder_open("/path/to/index", NULL, &db, &err) == PONDER_OK
 *       && ponder_index(db, "{\"paths\": [\"/home/me/notes\"]}", NULL, NULL, NULL, &err) == PONDER_OK
 *       && ponder_search(db, "{\"query\": \"proofing dough\", \"k\": 5}", &hits, &err) == PONDER_OK)
 *       puts(hits);                 (one JSON object: {"hits": [...]})
 *   else
 *       fprintf(stderr, "ponder: %s\n", err);
 *   ponder_free_string(hits); ponder_free_string(err); ponder_close(db);
 * tests/c/capi_smoke.c exercises the whole API, threads and cancellation included.
 */
#ifndef PONDER_H
#define PONDER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define PONDER_OK              0 /* success */
#define PONDER_ERR_INVALID     1 /* NULL argument, invalid UTF-8, bad JSON, unknown field, out of
                                    range, index busy in another process */
#define PONDER_ERR_NO_INDEX    2 /* the directory holds no index yet */
#define PONDER_ERR_NOT_FOUND   3 /* a missing file, or a path not in the index */
#define PONDER_ERR_IO          4 /* an I/O error */
#define PONDER_ERR_CORRUPT     5 /* a corrupt index or model file (ponder_index with
                                    {"rebuild": true} recovers an index) */
#define PONDER_ERR_CANCELLED   6 /* the indexing job was cancelled; its commits stay */
#define PONDER_ERR_UNSUPPORTED 7 /* not supported by this build or model */
#define PONDER_ERR_DEVICE      8 /* the compute device (GPU adapter) failed */
#define PONDER_ERR_INTERNAL    9 /* a bug in ponder (an internal error or a caught panic) */

/* An open index with its models. Opaque. */
typedef struct ponder_engine ponder_engine;

/*
 * Progress callback of ponder_index / ponder_update. `event_json` is one JSON object, borrowed
 * for the duration of the call (copy it to keep it):
 *   {"event": "walked", "files": N}
 *   {"event": "progress", "files_done": N, "files_total": N, "chunks": N, "chunks_per_s": F,
 *    "elapsed_s": F}                               (after each file)
 *   {"event": "warning", "message": "..."}         (a file skipped, a symlink loop, ...)
 *   {"event": "commit", "generation": N, "files": N, "chunks": N}
 * `user` is the pointer given to ponder_index. Return 0 to continue, non-zero to cancel the job
 * (as ponder_cancel does). Called synchronously on the thread that called ponder_index; it may
 * call ponder_cancel and ponder_search on the same handle, but not ponder_close, nor
 * ponder_index, ponder_update or ponder_remove (they would wait for the running job forever).
 */
typedef int (*ponder_progress_fn)(const char* event_json, void* user);

/*
 * The library version, e.g. "0.1.0". Static string: do not free. Thread-safe.
 */
const char* ponder_version(void);

/*
 * A short description of a return code ("invalid input", "no index", ...). Static string: do
 * not free. Thread-safe.
 */
const char* ponder_errstr(int code);

/*
 * Frees a string returned by any ponder function (a JSON result or an error message). NULL is
 * ignored. Each string must be freed exactly once. Thread-safe (any thread may free).
 */
void ponder_free_string(char* s);

/*
 * Opens the index in `index_dir` (UTF-8 path, required), or prepares to create it there on the
 * first ponder_index (the directory is created then). An existing index is opened now, so a
 * corrupt one is reported here (PONDER_ERR_CORRUPT, naming the file). Models load lazily, on
 * the first search or index (see ponder_warm).
 *
 * `options_json` (NULL for the defaults) is an object with any of:
 *   "model": "default" | path      embedding model: a Hugging Face directory or a ponder model
 *                                  file (default: the index's model, else the built-in one)
 *   "precision": "int8" | "f32"    compute precision (default: int8 for int8 models)
 *   "device": "auto" | "cpu" | "gpu" | "flex"     where models run (default "auto")
 *   "vectors": "i8" | "f16" | "f32" | "b1"        vector storage (default: the index's, i8 for
 *                                  a new index; another kind than the index's is refused
 *                                  when indexing unless the job rebuilds)
 *   "hidden": bool, "no_ignore": bool, "follow_links": bool, "max_bytes": N,
 *   "exclude": [paths]             what indexing reads (defaults: skip hidden files, honour
 *                                  .gitignore, follow links, skip files over 50 MiB)
 *   "commit_every_chunks": N, "commit_every_secs": F     commit cadence while indexing
 *   "reranker": "default" | path, "reranker_precision": "int8" | "f32"
 *   "resident_limit_mb": N         keep the process's resident memory under N MiB: past it,
 *                                  searches give the index's memory-mapped pages back to the
 *                                  page cache (Linux; default: no limit)
 *   "must_exist": bool             fail with PONDER_ERR_NO_INDEX if there is no index yet
 * Unknown fields are refused (PONDER_ERR_INVALID).
 *
 * On success *out receives a handle the caller owns and must close once with ponder_close; on
 * failure *out is NULL. Thread-safe: handles on different directories are independent; two
 * handles on one directory can both search (they see each other's commits), but only one
 * writes at a time, so share one handle between threads instead.
 */
int ponder_open(const char* index_dir, const char* options_json, ponder_engine** out, char** err);

/*
 * Closes a handle and frees everything it holds (models, open index files). NULL is ignored.
 * Call it exactly once, after every other call on the handle has returned (no other thread
 * may be using it); the handle is invalid afterwards. Returns PONDER_OK.
 */
int ponder_close(ponder_engine* engine);

/*
 * Loads the embedding model and opens the index now, so that the first search does not pay
 * for it. Optional. Thread-safe.
 */
int ponder_warm(ponder_engine* engine, char** err);

/*
 * Searches the last committed state of the index. `request_json` (required) is a search
 * request (see the top of this file); *hits_json (required) receives {"hits": [...]}, which
 * the caller frees with ponder_free_string. An index that does not exist yet gives
 * PONDER_ERR_NO_INDEX. Thread-safe: any number of searches may run at once on one handle,
 * also while an indexing job runs (they see its commits).
 */
int ponder_search(ponder_engine* engine, const char* request_json, char** hits_json, char** err);

/*
 * Indexes files and folders: new and changed files are embedded, unchanged ones skipped, files
 * gone from under the given folders removed; the paths are recorded as the index's roots.
 * `request_json` (NULL: re-index the recorded roots) is an object with any of:
 *   "paths": [paths]     files and folders (none: the roots recorded before)
 *   "rebuild": bool      discard the stored index and build it again (changes the model,
 *                        recovers a corrupt index)
 *   "compact": bool      afterwards, rewrite the index into one file per kind
 *   "instruction": str   query instruction to record ("" clears it)
 * `progress` (nullable) hears events, with `user` passed through (see ponder_progress_fn).
 * On success *report_json (nullable) receives {"files_seen", "files_indexed",
 * "files_unchanged", "files_removed", "files_skipped", "chunks_added", "generation",
 * "elapsed_s", "chunks_per_s"}, freed by the caller. PONDER_ERR_CANCELLED after ponder_cancel
 * or a non-zero return from `progress` (what was committed stays).
 * Thread-safe: blocks while another indexing job on this handle runs; searches go on meanwhile.
 */
int ponder_index(ponder_engine* engine, const char* request_json, ponder_progress_fn progress, void* user,
                 char** report_json, char** err);

/*
 * Brings the index up to date for paths that changed (files or folders, existing or deleted)
 * without recording them as roots: what an application's own file watcher calls.
 * `request_json` is as for ponder_index, with "paths" required. Ownership and thread-safety
 * as ponder_index.
 */
int ponder_update(ponder_engine* engine, const char* request_json, ponder_progress_fn progress, void* user,
                  char** report_json, char** err);

/*
 * Asks the indexing jobs running (or waiting) on this handle to stop; each returns
 * PONDER_ERR_CANCELLED soon after, with what it had staged committed. No effect when no job
 * runs (it does not cancel later jobs). Thread-safe: call it from any thread, or from the
 * progress callback.
 */
int ponder_cancel(ponder_engine* engine);

/*
 * What the index holds: *status_json (required; freed by the caller) receives the object of
 * `ponder status --json` ({"index", "generation", "files", "chunks", "disk_bytes",
 * "vector_files", "vectors", "model", "model_fingerprint", "precision", "dim", "chunking",
 * "query_instruction", "roots", "created_unix", "updated_unix"}). PONDER_ERR_NO_INDEX before
 * the first commit. Thread-safe.
 */
int ponder_status(ponder_engine* engine, char** status_json, char** err);

/*
 * A file's text as ponder indexed it (the chunks' text, not the file as it is now): whole when
 * start_line and end_line are 0, else lines start_line..end_line (1-based, inclusive; an
 * end_line of 0 or past the end means to the end). `path` (required) as a hit names it, or
 * relative to the current directory. *doc_json (required; freed by the caller) receives
 * {"path", "start_line", "end_line", "total_lines", "text"}. PONDER_ERR_NOT_FOUND if the file
 * is not in the index. Thread-safe.
 */
int ponder_get(ponder_engine* engine, const char* path, uint32_t start_line, uint32_t end_line, char** doc_json,
               char** err);

/*
 * Removes a file, or every file under a folder, from the index; *removed (nullable) receives
 * how many files. The path stays excluded from later ponder_index runs over its root until it
 * is indexed again explicitly. Thread-safe; serialised with indexing jobs.
 */
int ponder_remove(ponder_engine* engine, const char* path, uint64_t* removed, char** err);

#ifdef __cplusplus
}
#endif

#endif /* PONDER_H */
