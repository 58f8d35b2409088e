/*
 * entry.c
 *		The SQL functions of Tep's surface: track, untrack, list, counts,
 *		status, sweep, clear, diff_topic, snapshot and epoch.
 */
#include "presence.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(presence_diff_topic);
PG_FUNCTION_INFO_V1(presence_epoch);
PG_FUNCTION_INFO_V1(presence_channel);
PG_FUNCTION_INFO_V1(presence_entry_is_valid);

/* Oldest first; ties in byte order, as the diffs of a batch go out. */
#define ENTRY_ORDER " ORDER BY since_ts, worker_id COLLATE pg_catalog.\"C\", fd"

/* meta ($10) only where the installation has the column (%2$s, %3$s). */
#define TRACK_INSERT \
	"INSERT INTO %1$s.tep_presence" \
	" (worker_id, topic, fd, principal_id, kind, agent_id, since_ts%2$s)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7%3$s)" \
	" ON CONFLICT (topic, worker_id, fd) DO NOTHING"

#define TRACK_ARGTYPES \
	{TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, \
	INT4OID, TIMESTAMPTZOID, JSONBOID, OIDOID}

/* Track for a registered worker ($8, $9 and $11 unused). */
static PresenceQuery track_query = {
	PRESENCE_CHANGE_ONE(TRACK_INSERT), 11, TRACK_ARGTYPES
};

/*
 * Track that registers the worker first, in the same statement, owned by
 * the caller ($11).  Nothing is tracked if the worker was registered by
 * another session meanwhile (the insert waited for it and found its row).
 */
#define TRACK_REGISTERING(owner_column, owner) \
	PRESENCE_CHANGE_ONE("WITH registered AS (" \
						" INSERT INTO %1$s.tep_presence_worker" \
						" (worker_id, last_seen_ts, backend_pid, backend_start" \
						owner_column ")" \
						" VALUES ($1, $7, $8, $9" owner ")" \
						" ON CONFLICT (worker_id) DO NOTHING RETURNING true)" \
						" INSERT INTO %1$s.tep_presence" \
						" (worker_id, topic, fd, principal_id, kind, agent_id," \
						" since_ts%2$s)" \
						" SELECT $1, $2, $3, $4, $5, $6, $7%3$s" \
						" WHERE EXISTS (SELECT FROM registered)" \
						" ON CONFLICT (topic, worker_id, fd) DO NOTHING")

static PresenceQuery track_registering_query = {
	TRACK_REGISTERING(", owner", ", $11"), 11, TRACK_ARGTYPES
};

/* The same in a 1.0 installation, whose workers have no owner. */
static PresenceQuery track_registering_unowned_query = {
	TRACK_REGISTERING("", ""), 11, TRACK_ARGTYPES
};

static PresenceQuery untrack_query = {
	PRESENCE_CHANGE_ONE("DELETE FROM %1$s.tep_presence"
						" WHERE topic" EQ "$1 AND worker_id" EQ "$2 AND fd" EQ "$3"),
	3, {TEXTOID, TEXTOID, INT4OID}
};

static PresenceQuery set_status_query = {
	PRESENCE_CHANGE_ONE("UPDATE %1$s.tep_presence"
						" SET status_state = $4, status_note = $5,"
						" status_until = $6"
						" WHERE topic" EQ "$1 AND worker_id" EQ "$2 AND fd" EQ "$3"),
	6, {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, INT8OID}
};

/* 1.1 only (the function comes with the column). */
static PresenceQuery set_meta_query = {
	PRESENCE_CHANGE_ONE("UPDATE %1$s.tep_presence SET meta = $4"
						" WHERE topic" EQ "$1 AND worker_id" EQ "$2 AND fd" EQ "$3"),
	4, {TEXTOID, TEXTOID, INT4OID, JSONBOID}
};

static PresenceQuery list_query = {
	"SELECT " PRESENCE_ENTRY_COLUMNS " FROM %1$s.tep_presence"
	" WHERE topic" EQ "$1 AND worker_id" EQ "$2" ENTRY_ORDER,
	2, {TEXTOID, TEXTOID}
};

static PresenceQuery list_global_query = {
	"SELECT " PRESENCE_ENTRY_COLUMNS " FROM %1$s.tep_presence"
	" WHERE topic" EQ "$1" ENTRY_ORDER,
	1, {TEXTOID}
};

#define COUNT_COLUMNS "pg_catalog.count(*)," \
	" pg_catalog.count(*) FILTER (WHERE kind" EQ "'human')," \
	" pg_catalog.count(*) FILTER (WHERE kind" EQ "'agent_for')"

static PresenceQuery count_query = {
	"SELECT " COUNT_COLUMNS " FROM %1$s.tep_presence"
	" WHERE topic" EQ "$1 AND worker_id" EQ "$2",
	2, {TEXTOID, TEXTOID}
};

static PresenceQuery count_global_query = {
	"SELECT " COUNT_COLUMNS " FROM %1$s.tep_presence WHERE topic" EQ "$1",
	1, {TEXTOID}
};

static PresenceQuery find_query = {
	"SELECT " PRESENCE_ENTRY_COLUMNS " FROM %1$s.tep_presence"
	" WHERE topic" EQ "$1 AND worker_id" EQ "$2 AND fd" EQ "$3",
	3, {TEXTOID, TEXTOID, INT4OID}
};

static PresenceQuery topic_seq_query = {
	PRESENCE_TOPIC_SEQ, 1, {TEXTOID}
};

/* Expired statuses, oldest expiry first (the worker's variant skips held rows). */
#define EXPIRED_CANDIDATES \
	"SELECT ctid FROM %1$s.tep_presence" \
	" WHERE status_until" GT "0 AND status_until" LE "$1" \
	" AND " WITHIN_LIMITS \
	" ORDER BY status_until LIMIT $2"

static PresenceQuery expired_candidates_query = {
	EXPIRED_CANDIDATES, 2, {INT8OID, INT8OID}
};

static PresenceQuery expired_unlocked_candidates_query = {
	EXPIRED_CANDIDATES SKIP_LOCKED, 2, {INT8OID, INT8OID}
};

static PresenceQuery reset_expired_query = {
	"UPDATE %1$s.tep_presence"
	" SET status_state = 'available', status_note = '', status_until = 0"
	" WHERE ctid" EQ "ANY ($1)"
	" AND status_until" GT "0 AND status_until" LE "$2"
	" RETURNING " PRESENCE_ENTRY_COLUMNS,
	2, {TIDARRAYOID, INT8OID},
	BATCH_PLAN
};

/*
 * presence_entry_is_valid(worker_id, topic, fd, principal_id, kind,
 * agent_id, since_ts, status_state, status_note, status_until[, meta]): the
 * CHECK of tep_presence, so that rows Tep writes directly follow the same
 * rules, and no row is stored whose leave could not be sent (it could never
 * be pruned).  1.1 passes meta too, which must pass presence_meta_arg.
 */
Datum
presence_entry_is_valid(PG_FUNCTION_ARGS)
{
	PresenceEntry entry;

	for (int i = 0; i < PG_NARGS(); i++)
		if (PG_ARGISNULL(i))
			PG_RETURN_NULL();	/* NOT NULL reports it */

	entry.worker_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	entry.topic = text_to_cstring(PG_GETARG_TEXT_PP(1));
	entry.fd = PG_GETARG_INT32(2);
	entry.principal_id = text_to_cstring(PG_GETARG_TEXT_PP(3));
	entry.kind = text_to_cstring(PG_GETARG_TEXT_PP(4));
	entry.agent_id = text_to_cstring(PG_GETARG_TEXT_PP(5));
	entry.since_ts = PG_GETARG_INT64(6);
	entry.status_state = text_to_cstring(PG_GETARG_TEXT_PP(7));
	entry.status_note = text_to_cstring(PG_GETARG_TEXT_PP(8));
	entry.status_until = PG_GETARG_INT64(9);
	entry.meta = PG_NARGS() > 10 ? presence_meta_arg(fcinfo, 10) : "{}";

	if (presence_kind_violation(entry.kind, entry.agent_id) != NULL ||
		!presence_state_is_valid(entry.status_state) ||
		presence_exceeds_limits(&entry))
		PG_RETURN_BOOL(false);
	presence_check_diff_fits(&entry);
	PG_RETURN_BOOL(true);
}

/*
 * Track for a worker the probe did not find, registering it.  When another
 * session registered it first (nothing tracked, or an orphan entry was
 * already there), the worker is checked again as committed, and the entry
 * tracked as for a registered worker: a role racing another for a new id
 * never adds an entry to the other's worker.
 */
static bool
track_registering(const char *worker_id, Datum *values, const char *nulls)
{
	bool		unowned = presence_worker_owner_attnum() == InvalidAttrNumber;

	if (presence_change_one(PRESENCE_DIFF_JOIN,
							unowned ? &track_registering_unowned_query :
							&track_registering_query, values, nulls))
		return true;
	PushActiveSnapshot(GetLatestSnapshot());
	(void) presence_use_worker(worker_id);
	PopActiveSnapshot();
	return presence_change_one(PRESENCE_DIFF_JOIN, &track_query, values, nulls);
}

/*
 * presence_track(topic, fd, principal_id, kind, agent_id, worker_id[,
 * meta]): adds the entry and emits a join diff; false when it already
 * exists (its meta then left as it is).  A worker seen for the first time
 * is registered, owned by the caller, unless it was bound to a connection
 * that ended (presence_refuse_ended_worker).
 */
PRESENCE_FUNCTION(presence_track, true)
{
	PresenceEntry entry;
	Datum		values[11];
	char		nulls[11];		/* SPI's ' ' / 'n' flags, not a string */
	const char *violation;
	int			inserted;
	bool		added;

	entry.topic = presence_topic_arg(fcinfo, 0);
	entry.fd = presence_fd_arg(fcinfo, 1);
	entry.principal_id = presence_text_arg(fcinfo, 2, "principal_id", false,
										   PRESENCE_MAX_NAME_BYTES);
	entry.kind = presence_text_arg(fcinfo, 3, "kind", false,
								   PRESENCE_MAX_NAME_BYTES);
	entry.agent_id = presence_text_arg(fcinfo, 4, "agent_id", true,
									   PRESENCE_MAX_NAME_BYTES);
	entry.worker_id = presence_worker_arg(fcinfo, 5);
	entry.meta = PG_NARGS() > 6 ? presence_meta_arg(fcinfo, 6) : "{}";

	violation = presence_kind_violation(entry.kind, entry.agent_id);
	if (violation != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", violation),
				 errdetail("kind is \"%s\", agent_id is \"%s\".",
						   entry.kind, entry.agent_id)));

	entry.since_ts = presence_now_s();
	entry.status_state = "available";
	entry.status_note = "";
	entry.status_until = 0;
	presence_check_diff_fits(&entry);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(entry.worker_id);
	values[1] = CStringGetTextDatum(entry.topic);
	values[2] = Int32GetDatum(entry.fd);
	values[3] = CStringGetTextDatum(entry.principal_id);
	values[4] = CStringGetTextDatum(entry.kind);
	values[5] = CStringGetTextDatum(entry.agent_id);
	values[6] = Int64GetDatum(entry.since_ts);
	values[9] = PG_NARGS() > 6 ? PG_GETARG_DATUM(6) : (Datum) 0;
	nulls[9] = PG_NARGS() > 6 ? ' ' : 'n';	/* 1.0: not in the query */
	if (presence_is_connection_worker(entry.worker_id))
	{
		values[7] = Int32GetDatum(MyProcPid);
		values[8] = TimestampTzGetDatum(MyStartTimestamp);
		presence_watch_connection_exit();
	}
	else
		nulls[7] = nulls[8] = 'n';
	values[10] = ObjectIdGetDatum(presence_caller());

	presence_spi_connect();
	if (!presence_use_worker(entry.worker_id))
	{
		presence_refuse_ended_worker(entry.worker_id);
		added = track_registering(entry.worker_id, values, nulls);
	}
	else if ((inserted = presence_insert_row(&entry, values[9])) >= 0)
		added = inserted > 0;
	else
		added = presence_change_one(PRESENCE_DIFF_JOIN, &track_query, values,
									nulls);
	SPI_finish();
	PG_RETURN_BOOL(added);
}

/*
 * Change one (topic, worker, fd) entry, emitting a diff of the given kind,
 * if the caller may act on the worker: without the executor where the
 * table allows (row.c), else with `query`, whose parameters are the key
 * then set's values.  set is NULL for a leave.  A status change of a worker
 * whose connection ended is an error, as its track would be; a leave finds
 * nothing to remove.
 */
static bool
change_entry(PresenceDiffKind kind, PresenceQuery *query, const char *topic,
			 const char *worker_id, int32 fd, const PresenceRowSet *set)
{
	PresenceRowKey key = {topic, worker_id, fd};
	Datum		values[6];
	int			changed;

	presence_spi_connect();
	if (!presence_use_worker(worker_id) && set != NULL)
		presence_refuse_ended_worker(worker_id);
	changed = presence_change_row(kind, &key, set);
	if (changed < 0)
	{
		values[0] = CStringGetTextDatum(topic);
		values[1] = CStringGetTextDatum(worker_id);
		values[2] = Int32GetDatum(fd);
		for (int i = 0; set != NULL && i < set->ncolumns; i++)
			values[3 + i] = set->values[i];
		changed = presence_change_one(kind, query, values, NULL);
	}
	SPI_finish();
	return changed > 0;
}

/*
 * presence_untrack(topic, fd, worker_id): removes the entry (leave diff).
 */
PRESENCE_FUNCTION(presence_untrack, true)
{
	char	   *topic = presence_topic_arg(fcinfo, 0);
	int32		fd = presence_fd_arg(fcinfo, 1);
	char	   *worker_id = presence_worker_arg(fcinfo, 2);

	presence_leaving_because(PRESENCE_LEFT_UNTRACK);
	PG_RETURN_BOOL(change_entry(PRESENCE_DIFF_LEAVE, &untrack_query, topic,
								worker_id, fd, NULL));
}

/*
 * Drop every entry of a worker (or of one of its fds) in its own SPI
 * connection, if the caller may act on the worker.
 */
static int
drop_all_entries(const char *worker_id, int32 fd)
{
	int			total;

	presence_spi_connect();
	(void) presence_use_worker(worker_id);
	total = presence_drop_entries(worker_id, fd);
	SPI_finish();
	return total;
}

/*
 * presence_untrack_by_fd(fd, worker_id): the WebSocket-close hook; drops the
 * fd's entries in every topic.
 */
PRESENCE_FUNCTION(presence_untrack_by_fd, true)
{
	int32		fd = presence_fd_arg(fcinfo, 0);
	char	   *worker_id = presence_worker_arg(fcinfo, 1);

	presence_leaving_because(PRESENCE_LEFT_UNTRACK_BY_FD);
	PG_RETURN_INT32(drop_all_entries(worker_id, fd));
}

/*
 * presence_clear(worker_id): drops all of a worker's entries, with leave
 * diffs so that other workers' views stay true.
 */
PRESENCE_FUNCTION(presence_clear, true)
{
	char	   *worker_id = presence_worker_arg(fcinfo, 0);

	presence_leaving_because(PRESENCE_LEFT_CLEAR);
	PG_RETURN_INT32(drop_all_entries(worker_id, -1));
}

/*
 * presence_list(topic, worker_id): this worker's entries, oldest first.
 */
PRESENCE_FUNCTION(presence_list, false)
{
	Datum		values[2];

	values[0] = CStringGetTextDatum(presence_topic_arg(fcinfo, 0));
	values[1] = CStringGetTextDatum(presence_worker_arg(fcinfo, 1));
	presence_return_rows(fcinfo, &list_query, values);
	return (Datum) 0;
}

/*
 * presence_list_global(topic): every worker's entries, oldest first.
 */
PRESENCE_FUNCTION(presence_list_global, false)
{
	Datum		topic = CStringGetTextDatum(presence_topic_arg(fcinfo, 0));

	presence_return_rows(fcinfo, &list_global_query, &topic);
	return (Datum) 0;
}

typedef enum CountKind
{
	COUNT_ALL = 1,				/* the column of COUNT_COLUMNS */
	COUNT_HUMANS = 2,
	COUNT_AGENTS = 3
} CountKind;

/*
 * Count a topic's entries, this worker's (local) or all workers'.
 */
static int64
count_entries(FunctionCallInfo fcinfo, bool global, CountKind which)
{
	Datum		values[2];
	bool		isnull;
	int64		count;

	values[0] = CStringGetTextDatum(presence_topic_arg(fcinfo, 0));
	if (!global)
		values[1] = CStringGetTextDatum(presence_worker_arg(fcinfo, 1));
	presence_spi_connect();
	presence_execute(global ? &count_global_query : &count_query, values,
					 NULL, true, 1);
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, which,
										&isnull));
	SPI_finish();
	return count;
}

PRESENCE_FUNCTION(presence_count, false)
{
	PG_RETURN_INT64(count_entries(fcinfo, false, COUNT_ALL));
}

PRESENCE_FUNCTION(presence_count_humans, false)
{
	PG_RETURN_INT64(count_entries(fcinfo, false, COUNT_HUMANS));
}

PRESENCE_FUNCTION(presence_count_agents, false)
{
	PG_RETURN_INT64(count_entries(fcinfo, false, COUNT_AGENTS));
}

PRESENCE_FUNCTION(presence_count_global, false)
{
	PG_RETURN_INT64(count_entries(fcinfo, true, COUNT_ALL));
}

PRESENCE_FUNCTION(presence_count_humans_global, false)
{
	PG_RETURN_INT64(count_entries(fcinfo, true, COUNT_HUMANS));
}

PRESENCE_FUNCTION(presence_count_agents_global, false)
{
	PG_RETURN_INT64(count_entries(fcinfo, true, COUNT_AGENTS));
}

/*
 * The status columns' new values (palloc'd; set_status_query's $4-$6).
 */
static PresenceRowSet *
status_set(const char *state, const char *note, int64 until_ts)
{
	PresenceRowSet *set = palloc(sizeof(PresenceRowSet));

	set->ncolumns = 3;
	set->attnums[0] = PRESENCE_ATTNUM_STATUS_STATE;
	set->attnums[1] = PRESENCE_ATTNUM_STATUS_NOTE;
	set->attnums[2] = PRESENCE_ATTNUM_STATUS_UNTIL;
	set->values[0] = CStringGetTextDatum(state);
	set->values[1] = CStringGetTextDatum(note);
	set->values[2] = Int64GetDatum(until_ts);
	return set;
}

typedef int64 (*UntilArg) (FunctionCallInfo fcinfo, int argno);

/*
 * presence_set_status(topic, fd, state, note, until_ts, worker_id), with
 * until_ts read by `until_arg`: a deliberate write, so the same status
 * again still emits a diff.
 */
static bool
set_status(FunctionCallInfo fcinfo, UntilArg until_arg)
{
	char	   *topic = presence_topic_arg(fcinfo, 0);
	int32		fd = presence_fd_arg(fcinfo, 1);
	char	   *state = presence_text_arg(fcinfo, 2, "state", false,
										  PRESENCE_MAX_NAME_BYTES);
	char	   *note = presence_text_arg(fcinfo, 3, "note", true,
										 PRESENCE_MAX_NOTE_BYTES);
	int64		until_ts;
	char	   *worker_id = presence_worker_arg(fcinfo, 5);

	if (!presence_state_is_valid(state))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("state must be 'available', 'busy' or 'blocked', not \"%s\"",
						state)));
	until_ts = until_arg(fcinfo, 4);

	return change_entry(PRESENCE_DIFF_STATUS, &set_status_query, topic,
						worker_id, fd, status_set(state, note, until_ts));
}

/* until_ts bigint: epoch seconds, 0 = never. */
PRESENCE_FUNCTION(presence_set_status, true)
{
	PG_RETURN_BOOL(set_status(fcinfo, presence_until_arg));
}

/* until_ts text: an untyped parameter, read as bigint (1.1). */
PRESENCE_FUNCTION(presence_set_status_text, true)
{
	PG_RETURN_BOOL(set_status(fcinfo, presence_until_text_arg));
}

/* until_ts timestamptz (1.1). */
PRESENCE_FUNCTION(presence_set_status_at, true)
{
	PG_RETURN_BOOL(set_status(fcinfo, presence_until_timestamptz_arg));
}

/* until_ts interval: from the transaction's start (1.1). */
PRESENCE_FUNCTION(presence_set_status_for, true)
{
	PG_RETURN_BOOL(set_status(fcinfo, presence_until_interval_arg));
}

/*
 * presence_clear_status(topic, fd, worker_id): back to available, '', 0.
 */
PRESENCE_FUNCTION(presence_clear_status, true)
{
	char	   *topic = presence_topic_arg(fcinfo, 0);
	int32		fd = presence_fd_arg(fcinfo, 1);
	char	   *worker_id = presence_worker_arg(fcinfo, 2);

	PG_RETURN_BOOL(change_entry(PRESENCE_DIFF_STATUS, &set_status_query,
								topic, worker_id, fd,
								status_set("available", "", 0)));
}

/*
 * presence_set_meta(topic, fd, meta, worker_id): replaces the entry's meta
 * in place, with a status diff (a kind every Tep client applies as an
 * update of the entry: a new kind would be dropped, or refused, by the
 * clients that know only join, leave and status).
 */
PRESENCE_FUNCTION(presence_set_meta, true)
{
	char	   *topic = presence_topic_arg(fcinfo, 0);
	int32		fd = presence_fd_arg(fcinfo, 1);
	char	   *worker_id;
	PresenceRowSet set = {1, {PRESENCE_ATTNUM_META}};

	(void) presence_meta_arg(fcinfo, 2);
	set.values[0] = PG_GETARG_DATUM(2);
	worker_id = presence_worker_arg(fcinfo, 3);
	PG_RETURN_BOOL(change_entry(PRESENCE_DIFF_STATUS, &set_meta_query,
								topic, worker_id, fd, &set));
}

/*
 * presence_find_entry(topic, fd, worker_id): the entry, or NULL.
 */
PRESENCE_FUNCTION(presence_find_entry, false)
{
	Datum		values[3];
	TupleDesc	result_desc;
	MemoryContext caller_context = CurrentMemoryContext;
	Datum		columns[11];
	bool		column_nulls[11];
	HeapTuple	result = NULL;

	values[0] = CStringGetTextDatum(presence_topic_arg(fcinfo, 0));
	values[1] = CStringGetTextDatum(presence_worker_arg(fcinfo, 2));
	values[2] = Int32GetDatum(presence_fd_arg(fcinfo, 1));
	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "presence_find_entry must return a composite type");
	result_desc = BlessTupleDesc(result_desc);

	presence_spi_connect();
	presence_execute(&find_query, values, NULL, true, 1);
	if (SPI_processed > 0)
	{
		MemoryContext spi_context;

		heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
						  columns, column_nulls);
		spi_context = MemoryContextSwitchTo(caller_context);
		result = heap_form_tuple(result_desc, columns, column_nulls);
		MemoryContextSwitchTo(spi_context);
	}
	SPI_finish();

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/*
 * Reset up to `limit` expired statuses, with status diffs; skip_locked
 * leaves the entries an open transaction holds for another time.
 */
int
presence_sweep_batch(int limit, bool skip_locked, bool *more)
{
	Datum		now = Int64GetDatum(presence_now_s());

	return presence_change_batch(PRESENCE_DIFF_STATUS,
								 skip_locked ?
								 &expired_unlocked_candidates_query :
								 &expired_candidates_query,
								 &reset_expired_query, &now, NULL, 1, limit,
								 more);
}

static PresenceQuery over_limits_query = {
	"SELECT topic, worker_id, fd FROM %1$s.tep_presence"
	" WHERE status_until" GT "0 AND status_until" LE "$1"
	" AND NOT " WITHIN_LIMITS " LIMIT 100",
	1, {INT8OID}
};

/*
 * The background worker's one WARNING per expired entry the sweep leaves
 * because it is over the byte limits (the CHECK would refuse its reset),
 * naming it; such a row never stops the sweep of the others.  The caller
 * is connected to SPI.
 */
void
presence_warn_over_limits(void)
{
	static List *warned = NIL;
	Datum		now = Int64GetDatum(presence_now_s());

	presence_execute(&over_limits_query, &now, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *topic = SPI_getvalue(row, desc, 1);
		char	   *worker_id = SPI_getvalue(row, desc, 2);
		char	   *fd = SPI_getvalue(row, desc, 3);
		char	   *key = psprintf("%s/%s/%s", worker_id, fd, topic);
		MemoryContext old;

		if (list_member(warned, makeString(key)))
			continue;
		ereport(WARNING,
				(errmsg("presence: entry (topic \"%.*s\"%s, %zu bytes; worker_id \"%.*s\"; fd %s) is over the byte limits; its expired status is left",
						pg_mbcliplen(topic, strlen(topic), 64), topic,
						strlen(topic) > 64 ? "..." : "", strlen(topic),
						pg_mbcliplen(worker_id, strlen(worker_id), 64), worker_id, fd),
				 errdetail("topic, worker_id, principal_id and agent_id take at most 255 bytes, a note 1024 (the CHECK refuses such a row now; this one was written before)."),
				 errhint("Delete the entry, or untrack it.")));
		old = MemoryContextSwitchTo(TopMemoryContext);
		warned = lappend(warned, makeString(pstrdup(key)));
		MemoryContextSwitchTo(old);
	}
}

/*
 * presence_sweep_expired_status(): resets every expired status, all workers.
 */
PRESENCE_FUNCTION(presence_sweep_expired_status, true)
{
	int			total = 0;
	bool		more = true;

	presence_refuse_in_transaction_block("presence_sweep_expired_status");
	presence_spi_connect();
	while (more)
		total += presence_sweep_batch(presence_batch_size, false, &more);
	SPI_finish();
	PG_RETURN_INT32(total);
}

/*
 * presence_diff_topic(topic): 'presence:' || topic.
 */
Datum
presence_diff_topic(PG_FUNCTION_ARGS)
{
	char	   *topic = presence_topic_arg(fcinfo, 0);

	PG_RETURN_TEXT_P(cstring_to_text(psprintf(PRESENCE_DIFF_TOPIC_PREFIX "%s",
											   topic)));
}

/*
 * presence_channel(topic): the channel of the topic's diffs in topic
 * delivery.
 */
Datum
presence_channel(PG_FUNCTION_ARGS)
{
	char		channel[NAMEDATALEN];

	presence_topic_channel(presence_topic_arg(fcinfo, 0), channel);
	PG_RETURN_TEXT_P(cstring_to_text(channel));
}

/*
 * presence_snapshot(topic): {"topic", "seq", "entries", "epoch"}, read in
 * one snapshot so that a listener applies exactly the diffs with a greater
 * seq and the same epoch.
 */
PRESENCE_FUNCTION(presence_snapshot, false)
{
	char	   *topic = presence_topic_arg(fcinfo, 0);
	Datum		topic_arg_datum = CStringGetTextDatum(topic);
	int64		seq = 0;
	StringInfoData buf;
	text	   *result;

	/* Allocated before SPI_connect: the result must outlive SPI_finish. */
	initStringInfo(&buf);

	presence_spi_connect();
	presence_execute(&topic_seq_query, &topic_arg_datum, NULL, true, 1);
	if (SPI_processed > 0)
	{
		bool		isnull;

		seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	}

	appendStringInfoString(&buf, "{\"topic\":");
	escape_json(&buf, topic);
	appendStringInfo(&buf, ",\"seq\":" INT64_FORMAT ",\"entries\":[", seq);

	presence_execute(&list_global_query, &topic_arg_datum, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		PresenceEntry entry;

		presence_entry_from_tuple(&entry, SPI_tuptable->vals[i],
								  SPI_tuptable->tupdesc);
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		presence_append_snapshot_entry(&buf, &entry);
	}
	appendStringInfo(&buf, "],\"epoch\":\"%s\"}", presence_current_epoch());
	SPI_finish();

	result = cstring_to_text_with_len(buf.data, buf.len);
	PG_RETURN_TEXT_P(result);
}

/*
 * presence_epoch(): the epoch this server's diffs and snapshots carry now,
 * for a client that resumes from a seq it kept.
 */
Datum
presence_epoch(PG_FUNCTION_ARGS)
{
	const char *epoch;

	presence_spi_connect();		/* locks the extension against DROP */
	epoch = presence_current_epoch();
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(epoch));
}
