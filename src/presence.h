/*
 * presence.h
 *		Declarations shared by the presence extension's source files.
 *
 * Layers, each calling only those below it (no include cycles: every .c
 * file includes just this header):
 *
 *	 presence.c   module init: GUCs, shared memory, callbacks, bgworker
 *	 bgworker.c   the background worker's ticks, and its launcher
 *	 notify_guard.c  its watch on the NOTIFY queue (stalled listeners)
 *	 batch.c      1.1: SQL functions of many entries or topics in a call,
 *	              and a large topic's snapshot as rows (over entry.c's)
 *	 entry.c      SQL functions of Tep's surface (track, status, lists...)
 *	 liveness.c   SQL functions of workers, and pruning the dead
 *	 row.c        one entry changed without the executor (the hot path)
 *	 change.c     the change engine: pending diffs, commit-time seqs,
 *	              batches
 *	 history.c    1.1: meta's checks, the session history (written for
 *	              change.c's leaves) and its partitions, and the SQL
 *	              functions of history, last seen and principals
 *	 retention.c  1.1: removing idle topics' seq rows (the worker's walk)
 *	 epoch.c      the stream's epoch
 *	 args.c       argument checks and the session's worker identity
 *	 query.c      kept SPI plans and the extension's tables
 *	 wire.c       Tep's wire format (pure encoding)
 *	 compat.h     shims for the server API calls that differ by major
 *
 * entry.c asks liveness.c whether a worker is registered and may be used
 * by the caller; liveness.c never calls entry.c.
 */
#ifndef PRESENCE_H
#define PRESENCE_H

#include "postgres.h"

#include "access/skey.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"
#include "fmgr.h"
#include "storage/lock.h"
#include "lib/stringinfo.h"

/* Diffs are sent under the topic "presence:<topic>" (Tep's dtopic). */
#define PRESENCE_DIFF_TOPIC_PREFIX "presence:"

/* Limits of SPEC "Bad input", in bytes. */
#define PRESENCE_MAX_NAME_BYTES	255
#define PRESENCE_MAX_NOTE_BYTES	1024
/* An entry's meta, as jsonb writes it out (1.1). */
#define PRESENCE_MAX_META_BYTES	2048

/* GUCs (presence.c) */
extern char *presence_broadcast_channel;
extern int	presence_delivery;
extern char *presence_worker_id_guc;
extern char *presence_database;
extern int	presence_sweep_interval_ms;
extern int	presence_worker_ttl_s;
extern int	presence_batch_size;
extern double presence_notify_queue_warning;
extern int	presence_stalled_listener_timeout_ms;
extern const char *presence_signing_key;

/* presence.delivery: which channels a diff goes on. */
typedef enum PresenceDelivery
{
	PRESENCE_DELIVERY_BROADCAST,	/* presence.channel only (Tep's) */
	PRESENCE_DELIVERY_TOPIC,	/* the topic's own channel only */
	PRESENCE_DELIVERY_BOTH
} PresenceDelivery;

/* Shared memory kept only when preloaded (presence.c). */
extern void presence_note_bound_worker_exit(void);
extern uint64 presence_bound_worker_exits(void);
extern uint64 presence_server_run(void);
extern void presence_set_worker_stopped(bool stopped);
extern bool presence_worker_stopped(void);

/*
 * A query against the extension's tables, prepared once per backend.  The
 * text names tables as %1$s.table; %1$s becomes the extension's schema.
 */
typedef struct PresenceQuery
{
	const char *sql;
	int			nargs;
	Oid			argtypes[11];
	int			cursor_options; /* CURSOR_OPT_CUSTOM_PLAN for batches */
	SPIPlanPtr	plan;
	uint64		generation;
} PresenceQuery;

/*
 * Operators in query texts name their schema, like tables and functions do:
 * the SQL functions run with the caller's search_path, and nothing a caller
 * creates may be chosen instead of PostgreSQL's own.
 */
#define EQ " OPERATOR(pg_catalog.=) "
#define NE " OPERATOR(pg_catalog.<>) "
#define LT " OPERATOR(pg_catalog.<) "
#define LE " OPERATOR(pg_catalog.<=) "
#define GT " OPERATOR(pg_catalog.>) "
#define GE " OPERATOR(pg_catalog.>=) "
#define PLUS " OPERATOR(pg_catalog.+) "

/*
 * A batched change: planned for each batch with its arrays as constants
 * (a generic plan would guess 10 elements and search them for every row;
 * a constant array is hashed).
 */
#define BATCH_PLAN CURSOR_OPT_CUSTOM_PLAN

/*
 * The background worker's candidates: rows an application transaction has
 * locked are left for the next tick, so a batch never waits on one.
 */
#define SKIP_LOCKED " FOR UPDATE SKIP LOCKED"

/*
 * Within the byte limits of presence_exceeds_limits, in SQL: a row that is
 * not (written before the CHECK had them) cannot have its status reset,
 * which the CHECK would refuse, so the sweep leaves it (and the background
 * worker warns once).
 */
#define WITHIN_LIMITS \
	"(pg_catalog.octet_length(topic)" LE "255" \
	" AND pg_catalog.octet_length(worker_id)" LE "255" \
	" AND pg_catalog.octet_length(principal_id)" LE "255" \
	" AND pg_catalog.octet_length(agent_id)" LE "255" \
	" AND pg_catalog.octet_length(status_note)" LE "1024)"

/*
 * The columns of tep_presence, in table order, as every query reads them.
 * %2$s is ", meta" once the installation has 1.1's column, else empty: the
 * 1.1 library serves a database still at 1.0 until ALTER EXTENSION UPDATE.
 */
#define PRESENCE_ENTRY_COLUMNS \
	"worker_id, topic, fd, principal_id, kind, agent_id, since_ts, " \
	"status_state, status_note, status_until%2$s"

/*
 * A statement that changes at most one entry and returns it: `dml` must end
 * where a RETURNING clause can follow.
 */
#define PRESENCE_CHANGE_ONE(dml) dml " RETURNING " PRESENCE_ENTRY_COLUMNS

/*
 * A topic's seq as a snapshot reports it: its row's, else the floor (the
 * empty topic's row, retention.c), which its next diff goes on from.
 */
#define PRESENCE_TOPIC_SEQ \
	"SELECT COALESCE(" \
	"(SELECT seq FROM %1$s.presence_topic_seq WHERE topic" EQ "$1)," \
	" (SELECT seq FROM %1$s.presence_topic_seq WHERE topic" EQ "'')," \
	" 0)"

/* query.c */
extern bool presence_has_meta;
extern bool presence_lock_extension(void);
extern bool presence_extension_dropped(void);
extern Oid	presence_extension_oid(void);
extern Oid	presence_owner(void);

typedef enum PresenceTable
{
	PRESENCE_ENTRIES,			/* tep_presence */
	PRESENCE_WORKERS,			/* tep_presence_worker */
	PRESENCE_SEQS,				/* presence_topic_seq */
	PRESENCE_ENDED_WORKERS		/* presence_ended_worker (1.1; else
								 * InvalidOid) */
} PresenceTable;

extern Oid	presence_table(PresenceTable which);
extern AttrNumber presence_worker_owner_attnum(void);
extern bool presence_find_by_key(Relation rel, Relation index, const char *key,
								 Snapshot snapshot, TupleTableSlot *slot);
extern bool presence_find_by_scan_keys(Relation rel, Relation index,
									   ScanKey keys, int nkeys,
									   Snapshot snapshot, TupleTableSlot *slot);
extern void presence_spi_connect(void);
extern int	presence_execute(PresenceQuery *query, Datum *values,
							 const char *nulls, bool read_only, long count);
extern Portal presence_open_cursor(PresenceQuery *query, Datum *values);
extern void presence_return_rows(FunctionCallInfo fcinfo,
								 PresenceQuery *query, Datum *values);

/* A tep_presence row as read back from SPI (all strings palloc'd). */
typedef struct PresenceEntry
{
	char	   *worker_id;
	char	   *topic;
	int32		fd;
	char	   *principal_id;
	char	   *kind;
	char	   *agent_id;
	int64		since_ts;
	char	   *status_state;
	char	   *status_note;
	int64		status_until;
	char	   *meta;			/* JSON object text; "{}" at 1.0 */
} PresenceEntry;

/* wire.c */
typedef enum PresenceDiffKind
{
	PRESENCE_DIFF_JOIN,
	PRESENCE_DIFF_LEAVE,
	PRESENCE_DIFF_STATUS
} PresenceDiffKind;

extern void presence_entry_from_tuple(PresenceEntry *entry, HeapTuple tuple,
									  TupleDesc tupdesc);
extern void presence_append_snapshot_entry(StringInfo buf,
										   const PresenceEntry *entry);
extern int	presence_encode_diff(StringInfo buf, PresenceDiffKind kind,
								 const PresenceEntry *entry, int *json_at);
extern void presence_finish_diff(StringInfo payload, const char *text,
								 int len, int seq_at, int json_at, int64 seq,
								 const char *epoch, const char *signing_key);
extern void presence_check_diff_fits(const PresenceEntry *entry);

extern void presence_topic_channel(const char *topic, char *channel);

/* args.c */
extern char *presence_text_arg(FunctionCallInfo fcinfo, int argno,
							   const char *argname, bool allow_empty,
							   int max_bytes);
extern char *presence_topic_arg(FunctionCallInfo fcinfo, int argno);
extern int32 presence_fd_arg(FunctionCallInfo fcinfo, int argno);
extern int64 presence_seconds_arg(FunctionCallInfo fcinfo, int argno,
								  const char *argname);
extern bool presence_exceeds_limits(const PresenceEntry *entry);
extern int64 presence_until_arg(FunctionCallInfo fcinfo, int argno);
extern int64 presence_until_text_arg(FunctionCallInfo fcinfo, int argno);
extern int64 presence_until_timestamptz_arg(FunctionCallInfo fcinfo, int argno);
extern int64 presence_until_interval_arg(FunctionCallInfo fcinfo, int argno);
extern const char *presence_kind_violation(const char *kind,
										   const char *agent_id);
extern bool presence_state_is_valid(const char *state);
extern void presence_check_entry_rules(const PresenceEntry *entry,
									   const char *relname);
extern int64 presence_now_s(void);
extern const char *presence_connection_worker(void);
extern bool presence_is_connection_worker(const char *worker_id);
extern char *presence_worker_arg(FunctionCallInfo fcinfo, int argno);
extern Oid	presence_caller(void);
extern Datum presence_call_as_owner(PGFunction body, FunctionCallInfo fcinfo,
									bool changes, const char *name);

/*
 * An SQL function that reads or changes the extension's tables.  The SQL
 * functions are SECURITY INVOKER (1.1): the wrapper this defines takes the
 * caller as the role PostgreSQL checks privileges for now (GetUserId(), so
 * inside a SECURITY DEFINER function of an application, that function's
 * owner), refuses a change inside a security-restricted operation, and
 * runs `body` as the tables' owner, as SECURITY DEFINER did.  Use:
 *
 *   PRESENCE_FUNCTION(presence_track, true)
 *   {
 *       ... the body, with PG_FUNCTION_ARGS ...
 *   }
 */
#define PRESENCE_FUNCTION(name, changes) \
	static Datum name##_body(PG_FUNCTION_ARGS); \
	PG_FUNCTION_INFO_V1(name); \
	Datum \
	name(PG_FUNCTION_ARGS) \
	{ \
		return presence_call_as_owner(name##_body, fcinfo, changes, #name); \
	} \
	static Datum \
	name##_body(PG_FUNCTION_ARGS)
extern void presence_refuse_in_transaction_block(const char *name);
extern void presence_check_connection_id(const char *worker_id);
extern void presence_check_worker_owner(const char *worker_id, Oid owner);
extern void presence_watch_connection_exit(void);

/* epoch.c: an epoch is this many hex digits. */
#define PRESENCE_EPOCH_CHARS 16
extern const char *presence_current_epoch(void);

/* change.c */
extern void presence_register_change_callbacks(void);
/*
 * A commit of more topics than this locks them all at once: half the lock
 * table slots a transaction may count on, leaving the rest to its tables.
 */
#define PRESENCE_TOPIC_LOCKS (max_locks_per_xact / 2)
extern void presence_lock_topics(const char **topics, int ntopics);
extern void presence_record_diff(PresenceDiffKind kind,
								 const PresenceEntry *entry);
extern bool presence_change_one(PresenceDiffKind kind, PresenceQuery *change,
								Datum *values, const char *nulls);
extern int	presence_change_batch(PresenceDiffKind kind,
								  PresenceQuery *candidates,
								  PresenceQuery *change,
								  Datum *values, const char *nulls,
								  int nvalues, int limit, bool *more);
extern int	presence_drop_entries(const char *worker_id, int32 fd);

/* row.c: one entry's key, and the columns an update gives new values. */
typedef struct PresenceRowKey
{
	const char *topic;
	const char *worker_id;
	int32		fd;
} PresenceRowKey;

typedef struct PresenceRowSet
{
	int			ncolumns;
	AttrNumber	attnums[3];		/* tep_presence's, in table order */
	Datum		values[3];
} PresenceRowSet;

#define PRESENCE_ATTNUM_STATUS_STATE 8
#define PRESENCE_ATTNUM_STATUS_NOTE 9
#define PRESENCE_ATTNUM_STATUS_UNTIL 10
#define PRESENCE_ATTNUM_META 11

extern int	presence_change_row(PresenceDiffKind kind, const PresenceRowKey *key,
								const PresenceRowSet *set);
extern int	presence_insert_row(const PresenceEntry *entry, Datum meta);

/* entry.c */
extern void presence_warn_over_limits(void);
extern int	presence_sweep_batch(int limit, bool skip_locked, bool *more);

/* history.c */
typedef enum PresenceLeaveReason
{
	PRESENCE_LEFT_UNTRACK,
	PRESENCE_LEFT_UNTRACK_BY_FD,
	PRESENCE_LEFT_CLEAR,
	PRESENCE_LEFT_WORKER_STOP,
	PRESENCE_LEFT_WORKER_RESTART,
	PRESENCE_LEFT_PRUNED
} PresenceLeaveReason;

extern bool presence_history_enabled;
extern int	presence_history_retention_s;
extern void presence_define_history_gucs(void);
extern char *presence_meta_arg(FunctionCallInfo fcinfo, int argno);
extern void presence_leaving_because(PresenceLeaveReason reason);
extern void presence_history_record(const PresenceEntry *entry);
extern int	presence_history_maintain_now(void);
extern bool presence_history_maintenance_due(void);

/* liveness.c */
extern bool presence_use_worker(const char *worker_id);
extern void presence_refuse_ended_worker(const char *worker_id);
extern int	presence_prune_batch(int limit, bool check_bound_backends,
								 bool skip_locked, bool *more);

/* retention.c */
extern int	presence_topic_retention_s;
extern void presence_define_retention_gucs(void);
extern bool presence_retention_due(void);
extern int	presence_retention_worker_batch(int limit, bool *more);

/* notify_guard.c */
extern void presence_watch_notify_queue(void);
extern Size presence_listeners_shmem_size(void);
extern void presence_listeners_shmem_init(void);
extern void presence_watch_listens(void);

/* bgworker.c */
extern void presence_register_bgworker(void);
extern PGDLLEXPORT void presence_launcher_main(Datum main_arg);
extern PGDLLEXPORT void presence_bgworker_main(Datum main_arg);

#endif							/* PRESENCE_H */
