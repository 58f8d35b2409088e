/*
 * history.c
 *		1.1's additions beside Tep's surface: an entry's meta, the history
 *		of ended sessions (presence.history) with its daily partitions and
 *		their retention, last seen, and one row per principal.
 *
 * A session's history row is written at the statement that ends it, from
 * the leave diff's entry (change.c calls presence_history_record), so it
 * commits or rolls back with the leave.  The reason is the ending
 * function's, set by it before it drops anything.
 */
#include "presence.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#define SECONDS_PER_DAY 86400
#define DIV " OPERATOR(pg_catalog./) "
#define HISTORY_TABLE "presence_history"
#define HISTORY_DEFAULT "presence_history_default"

/* How often the background worker maintains the partitions, at most. */
#define MAINTAIN_INTERVAL_MS 60000

bool		presence_history_enabled = false;
int			presence_history_retention_s = 7 * SECONDS_PER_DAY;

static PresenceLeaveReason leave_reason = PRESENCE_LEFT_UNTRACK;

/* A lock was not free at the last maintenance: try again next tick. */
static bool maintenance_pending = false;

static const char *const leave_reason_names[] = {
	"untrack", "untrack_by_fd", "clear", "worker_stop", "worker_restart",
	"pruned"
};

static PresenceQuery record_query = {
	"INSERT INTO %1$s.presence_history (topic, worker_id, fd, principal_id,"
	" kind, agent_id, meta, joined_ts, left_ts, reason)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	10, {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
	INT8OID, INT8OID, TEXTOID}
};

/* Sessions of a topic that overlap [from_ts, to_ts), oldest first. */
static PresenceQuery history_query = {
	"SELECT topic, worker_id, fd, principal_id, kind, agent_id, meta,"
	" joined_ts, left_ts, reason FROM %1$s.presence_history"
	" WHERE topic" EQ "$1 AND left_ts" GE "$2 AND joined_ts" LT "$3"
	" ORDER BY joined_ts, left_ts, worker_id COLLATE pg_catalog.\"C\", fd",
	3, {TEXTOID, INT8OID, INT8OID}
};

static PresenceQuery present_query = {
	"SELECT 1 FROM %1$s.tep_presence WHERE principal_id" EQ "$1 LIMIT 1",
	1, {TEXTOID}
};

static PresenceQuery present_in_topic_query = {
	"SELECT 1 FROM %1$s.tep_presence"
	" WHERE topic" EQ "$2 AND principal_id" EQ "$1 LIMIT 1",
	2, {TEXTOID, TEXTOID}
};

static PresenceQuery last_left_query = {
	"SELECT pg_catalog.max(left_ts) FROM %1$s.presence_history"
	" WHERE principal_id" EQ "$1",
	1, {TEXTOID}
};

static PresenceQuery last_left_in_topic_query = {
	"SELECT pg_catalog.max(left_ts) FROM %1$s.presence_history"
	" WHERE principal_id" EQ "$1 AND topic" EQ "$2",
	2, {TEXTOID, TEXTOID}
};

/* busy beats available beats blocked: the lowest rank wins. */
#define STATE_RANK \
	"CASE WHEN status_state" EQ "'busy' THEN 1" \
	" WHEN status_state" EQ "'available' THEN 2 ELSE 3 END"

/*
 * One row per principal: its human connections' state, or its agents'
 * when no human is connected.  meta is its newest human entry's (else its
 * newest agent entry's).
 */
static PresenceQuery principals_query = {
	"SELECT principal_id,"
	" pg_catalog.count(*) FILTER (WHERE kind" EQ "'human'),"
	" pg_catalog.count(DISTINCT agent_id) FILTER (WHERE kind" EQ "'agent_for'),"
	" pg_catalog.count(*),"
	" (ARRAY['busy', 'available', 'blocked'])[COALESCE("
	"  pg_catalog.min(" STATE_RANK ") FILTER (WHERE kind" EQ "'human'),"
	"  pg_catalog.min(" STATE_RANK "))],"
	" pg_catalog.min(since_ts),"
	" (pg_catalog.array_agg(meta ORDER BY kind" EQ "'human' DESC,"
	"  since_ts DESC, worker_id COLLATE pg_catalog.\"C\" DESC, fd DESC))[1]"
	" FROM %1$s.tep_presence WHERE topic" EQ "$1"
	" GROUP BY principal_id"
	" ORDER BY pg_catalog.min(since_ts), principal_id COLLATE pg_catalog.\"C\"",
	1, {TEXTOID}
};

static PresenceQuery count_principals_query = {
	"SELECT pg_catalog.count(DISTINCT principal_id) FROM %1$s.tep_presence"
	" WHERE topic" EQ "$1",
	1, {TEXTOID}
};

/* The days that have rows in the default partition, within retention. */
static PresenceQuery default_days_query = {
	"SELECT DISTINCT left_ts" DIV "86400 FROM %1$s.presence_history_default"
	" WHERE left_ts" GE "$1 LIMIT 8",
	1, {INT8OID}
};

static PresenceQuery expire_default_query = {
	"DELETE FROM %1$s.presence_history_default WHERE ctid" EQ "ANY (ARRAY("
	" SELECT ctid FROM %1$s.presence_history_default"
	" WHERE left_ts" LT "$1 LIMIT $2))",
	2, {INT8OID, INT8OID}
};

/* The day partitions, by name (presence_history_YYYYMMDD), oldest first. */
static PresenceQuery partitions_query = {
	"SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_inherits AS i"
	" JOIN pg_catalog.pg_class AS c ON c.oid" EQ "i.inhrelid"
	" WHERE i.inhparent" EQ "$1"
	" AND c.relname::pg_catalog.text OPERATOR(pg_catalog.~)"
	" '^presence_history_[0-9]{8}$'"
	" AND c.relname::pg_catalog.text" LT "$2 COLLATE pg_catalog.\"C\""
	" ORDER BY c.relname::pg_catalog.text COLLATE pg_catalog.\"C\"",
	2, {OIDOID, TEXTOID}
};

/*
 * presence.history and presence.history_retention; from _PG_init.  Only a
 * superuser turns history off or on: it is an audit trail.
 */
void
presence_define_history_gucs(void)
{
	DefineCustomBoolVariable("presence.history",
							 "Records each ended presence session in presence_history.",
							 NULL,
							 &presence_history_enabled,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("presence.history_retention",
							"Age after which a day's presence history is dropped.",
							"Whole days go: a day's partition once its last second is older.",
							&presence_history_retention_s,
							7 * SECONDS_PER_DAY, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * A meta argument as the text jsonb writes: ERROR 22004 when NULL, 22023
 * when not an object or longer than PRESENCE_MAX_META_BYTES (which keeps
 * every diff of the entry within NOTIFY's limit with the other fields).
 */
char *
presence_meta_arg(FunctionCallInfo fcinfo, int argno)
{
	Jsonb	   *meta;
	char	   *text;
	int			bytes;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("meta must not be NULL"),
				 errhint("An entry without metadata has '{}'.")));
	meta = PG_GETARG_JSONB_P(argno);
	if (!JB_ROOT_IS_OBJECT(meta))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meta must be a JSON object"),
				 errdetail("It is a JSON %s.",
						   JB_ROOT_IS_ARRAY(meta) && !JB_ROOT_IS_SCALAR(meta) ?
						   "array" : "scalar")));
	text = JsonbToCString(NULL, &meta->root, VARSIZE(meta));
	bytes = strlen(text);
	if (bytes > PRESENCE_MAX_META_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meta must be at most %d bytes as JSON",
						PRESENCE_MAX_META_BYTES),
				 errdetail("It is %d bytes.", bytes)));
	return text;
}

/*
 * Say why the entries the caller is about to drop leave (their history
 * rows' reason).
 */
void
presence_leaving_because(PresenceLeaveReason reason)
{
	leave_reason = reason;
}

/*
 * Record the session of an entry that leaves, when presence.history is on
 * and the installation has the table (1.1).  The caller is connected to
 * SPI.
 */
void
presence_history_record(const PresenceEntry *entry)
{
	Datum		values[10];

	if (!presence_history_enabled || !presence_has_meta)
		return;
	values[0] = CStringGetTextDatum(entry->topic);
	values[1] = CStringGetTextDatum(entry->worker_id);
	values[2] = Int32GetDatum(entry->fd);
	values[3] = CStringGetTextDatum(entry->principal_id);
	values[4] = CStringGetTextDatum(entry->kind);
	values[5] = CStringGetTextDatum(entry->agent_id);
	values[6] = DirectFunctionCall1(jsonb_in, CStringGetDatum(entry->meta));
	values[7] = Int64GetDatum(entry->since_ts);
	values[8] = Int64GetDatum(presence_now_s());
	values[9] = CStringGetTextDatum(leave_reason_names[leave_reason]);
	presence_execute(&record_query, values, NULL, false, 0);
}

/*
 * presence_history(topic, from_ts, to_ts): the ended sessions of a topic
 * that overlap [from_ts, to_ts), oldest first.
 */
PRESENCE_FUNCTION(presence_history, false)
{
	Datum		values[3];
	int64		from_ts = presence_seconds_arg(fcinfo, 1, "from_ts");
	int64		to_ts = presence_seconds_arg(fcinfo, 2, "to_ts");

	values[0] = CStringGetTextDatum(presence_topic_arg(fcinfo, 0));
	if (to_ts < from_ts)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("to_ts must not be before from_ts"),
				 errdetail("from_ts is " INT64_FORMAT ", to_ts " INT64_FORMAT ".",
						   from_ts, to_ts)));
	values[1] = Int64GetDatum(from_ts);
	values[2] = Int64GetDatum(to_ts);
	presence_return_rows(fcinfo, &history_query, values);
	return (Datum) 0;
}

/*
 * presence_last_seen(principal_id, topic): now (this transaction's second)
 * while the principal has an entry (in the topic), else when its last
 * recorded session ended, else NULL.
 */
PRESENCE_FUNCTION(presence_last_seen, false)
{
	Datum		values[2];
	bool		in_topic = !PG_ARGISNULL(1);
	bool		isnull = true;
	int64		seen = 0;

	values[0] = CStringGetTextDatum(presence_text_arg(fcinfo, 0,
													  "principal_id", false,
													  PRESENCE_MAX_NAME_BYTES));
	if (in_topic)
		values[1] = CStringGetTextDatum(presence_topic_arg(fcinfo, 1));

	presence_spi_connect();
	presence_execute(in_topic ? &present_in_topic_query : &present_query,
					 values, NULL, true, 1);
	if (SPI_processed > 0)
	{
		seen = presence_now_s();
		isnull = false;
	}
	else
	{
		presence_execute(in_topic ? &last_left_in_topic_query :
						 &last_left_query, values, NULL, true, 1);
		seen = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_INT64(seen);
}

/*
 * presence_principals(topic): one row per principal with entries in the
 * topic (see principals_query), earliest first.
 */
PRESENCE_FUNCTION(presence_principals, false)
{
	Datum		topic = CStringGetTextDatum(presence_topic_arg(fcinfo, 0));

	presence_return_rows(fcinfo, &principals_query, &topic);
	return (Datum) 0;
}

/*
 * presence_count_principals(topic): the principals with entries in it.
 */
PRESENCE_FUNCTION(presence_count_principals, false)
{
	Datum		topic = CStringGetTextDatum(presence_topic_arg(fcinfo, 0));
	bool		isnull;
	int64		count;

	presence_spi_connect();
	presence_execute(&count_principals_query, &topic, NULL, true, 1);
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(count);
}

/* A day's partition name, presence_history_YYYYMMDD (UTC). */
static void
partition_name(int64 day, char *name)
{
	int			year;
	int			month;
	int			mday;

	j2date((int) (day + UNIX_EPOCH_JDATE), &year, &month, &mday);
	snprintf(name, NAMEDATALEN, HISTORY_TABLE "_%04d%02d%02d", year, month,
			 mday);
}

/*
 * Run one statement built from a format whose %1$s is the schema, %2$s the
 * partition and %3$, %4$ its bounds; ERROR if it fails.
 */
static void
run_ddl(const char *format, const char *schema, const char *partition,
		int64 from, int64 to)
{
	/* long long: PostgreSQL 19 has no INT64_MODIFIER for a %n$ format */
	char	   *sql = psprintf(format, schema, quote_identifier(partition),
							   (long long) from, (long long) to);

	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "presence: could not maintain history: %s", sql);
	pfree(sql);
}

/*
 * Make a day's partition if missing: built beside the table, given the
 * day's rows from the default partition, then attached.  Attaching takes
 * the table and the default partition exclusively, and only when both are
 * free at once (else another run makes it), so a leave never waits on it;
 * the table too, because a leave already routed to the default partition
 * (holding the table's lock, waiting for the default's) would fail its
 * partition constraint once the day is attached.
 */
static void
ensure_day(Oid namespace, Oid history_oid, Oid default_oid,
		   const char *schema, int64 day)
{
	char		name[NAMEDATALEN];
	int64		from = day * SECONDS_PER_DAY;
	int64		to = from + SECONDS_PER_DAY;

	partition_name(day, name);
	if (OidIsValid(get_relname_relid(name, namespace)))
		return;
	if (!ConditionalLockRelationOid(history_oid, AccessExclusiveLock) ||
		!ConditionalLockRelationOid(default_oid, AccessExclusiveLock))
	{
		maintenance_pending = true;
		return;
	}
	/* Another run may have made it and committed before the lock. */
	if (OidIsValid(get_relname_relid(name, namespace)))
		return;
	run_ddl("CREATE TABLE %1$s.%2$s (LIKE %1$s.presence_history)",
			schema, name, from, to);
	run_ddl("WITH moved AS (DELETE FROM %1$s.presence_history_default"
			" WHERE left_ts" GE "%3$lld AND left_ts" LT "%4$lld"
			" RETURNING *) INSERT INTO %1$s.%2$s SELECT * FROM moved",
			schema, name, from, to);
	run_ddl("ALTER TABLE %1$s.presence_history ATTACH PARTITION %1$s.%2$s"
			" FOR VALUES FROM (%3$lld) TO (%4$lld)",
			schema, name, from, to);
}

/*
 * Drop the day partitions wholly older than the cutoff day; returns how
 * many.  Dropping locks the table exclusively, so only when that lock is
 * free at once: a leave never waits on it; another run drops the rest.
 * (IF EXISTS: a concurrent run may have dropped one since the list.)
 */
static int
drop_old_days(Oid history_oid, const char *schema, int64 cutoff_day)
{
	char		keep[NAMEDATALEN];
	Datum		values[2];
	List	   *names = NIL;
	ListCell   *lc;

	partition_name(cutoff_day, keep);
	values[0] = ObjectIdGetDatum(history_oid);
	values[1] = CStringGetTextDatum(keep);
	presence_execute(&partitions_query, values, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc, 1));
	if (names == NIL)
		return 0;
	if (!ConditionalLockRelationOid(history_oid, AccessExclusiveLock))
	{
		maintenance_pending = true;
		return 0;
	}
	foreach(lc, names)
		run_ddl("DROP TABLE IF EXISTS %1$s.%2$s", schema, lfirst(lc), 0, 0);
	return list_length(names);
}

/*
 * Maintain the history's partitions: when history is on, today's and
 * tomorrow's exist; days with rows in the default partition (history
 * turned on in a session, or before a run) get theirs;
 * days past presence.history_retention are dropped, and the default
 * partition's old rows deleted, batch_size at a time.  Returns the
 * partitions dropped.  The caller is connected to SPI.
 */
int
presence_history_maintain_now(void)
{
	Oid			namespace = get_rel_namespace(presence_table(PRESENCE_ENTRIES));
	Oid			history_oid;
	Oid			default_oid;
	const char *schema = quote_identifier(get_namespace_name(namespace));
	int64		now = presence_now_s();
	int64		cutoff = now - presence_history_retention_s;
	int64		cutoff_day = cutoff < 0 ? 0 : cutoff / SECONDS_PER_DAY;
	Datum		values[2];
	List	   *days = NIL;
	ListCell   *lc;

	history_oid = get_relname_relid(HISTORY_TABLE, namespace);
	default_oid = get_relname_relid(HISTORY_DEFAULT, namespace);
	if (!OidIsValid(history_oid) || !OidIsValid(default_oid))
		return 0;				/* still at 1.0 */

	if (presence_history_enabled)
		days = list_make2(makeInteger(now / SECONDS_PER_DAY),
						  makeInteger(now / SECONDS_PER_DAY + 1));
	values[0] = Int64GetDatum(cutoff_day * SECONDS_PER_DAY);
	presence_execute(&default_days_query, values, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
		days = lappend(days, makeInteger(atoi(SPI_getvalue(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1))));
	foreach(lc, days)
		ensure_day(namespace, history_oid, default_oid, schema,
				   intVal(lfirst(lc)));

	values[0] = Int64GetDatum(cutoff_day * SECONDS_PER_DAY);
	values[1] = Int64GetDatum(presence_batch_size);
	presence_execute(&expire_default_query, values, NULL, false, 0);
	if (SPI_processed >= (uint64) presence_batch_size)
		maintenance_pending = true;
	return drop_old_days(history_oid, schema, cutoff_day);
}

/*
 * Whether the background worker maintains the history on this tick: once
 * a minute, on every tick while the last run left something undone, and
 * at once when presence.history or its retention changed (a reload).
 */
bool
presence_history_maintenance_due(void)
{
	static TimestampTz last = 0;
	static bool last_enabled = false;
	static int	last_retention = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (!maintenance_pending && last != 0 &&
		last_enabled == presence_history_enabled &&
		last_retention == presence_history_retention_s &&
		!TimestampDifferenceExceeds(last, now, MAINTAIN_INTERVAL_MS))
		return false;
	last = now;
	last_enabled = presence_history_enabled;
	last_retention = presence_history_retention_s;
	maintenance_pending = false;
	return true;
}

/*
 * presence_history_maintain(): what the background worker does once a
 * minute, for installations without it (schedule it daily or more often).
 */
PRESENCE_FUNCTION(presence_history_maintain, true)
{
	int			dropped;

	presence_refuse_in_transaction_block("presence_history_maintain");
	presence_spi_connect();
	dropped = presence_history_maintain_now();
	SPI_finish();
	PG_RETURN_INT32(dropped);
}
