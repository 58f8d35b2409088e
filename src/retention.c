/*
 * retention.c
 *		1.1: presence_topic_seq keeps the topics in use, not every topic
 *		ever used.
 *
 * A topic's seq row goes once the topic has had no entries and no diffs
 * for presence.topic_retention: its changed_ts (the last commit that sent
 * its diffs) is that old and no entry of it is committed.  A topic
 * without a row continues above the floor, the seq of the empty topic's
 * row (a name no call accepts), which each removal raises to the removed
 * seqs: so a topic that comes back goes on with a seq greater than any it
 * had, under the same epoch, and a client that kept its old seq sees a
 * gap, never a repeat.  Rows are removed under the topics' locks, as a
 * commit takes them (change.c), so no commit is between reading a topic's
 * row and finding it gone.
 *
 * The background worker walks the table in key order, a batch per
 * transaction and a few batches per tick, one walk per minute at most
 * (per retention, when shorter), removing each batch's idle topics in its
 * transaction; presence_remove_idle_topics() walks the whole table and
 * then removes at once, so that it holds the topics' locks only at the
 * end.
 */
#include "presence.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"


int			presence_topic_retention_s = SECS_PER_DAY;

/* The worker's walk: at most this many batches a tick. */
#define RETENTION_BATCHES_PER_TICK 10
/* ... and a new walk at most this often (or each retention, if shorter). */
#define RETENTION_WALK_INTERVAL_S 60

/*
 * A batch of rows after $1 in key order, each with whether its topic may
 * go: idle since $3 (changed_ts) and no entry committed.
 */
static PresenceQuery walk_query = {
	"SELECT s.topic, s.changed_ts" LE "$3 AND NOT EXISTS"
	" (SELECT FROM %1$s.tep_presence p WHERE p.topic" EQ "s.topic)"
	" FROM %1$s.presence_topic_seq s WHERE s.topic" GT "$1"
	" ORDER BY s.topic LIMIT $2",
	3, {TEXTOID, INT8OID, INT8OID}
};

/* The same checks again, under the topics' locks, as the rows go. */
static PresenceQuery remove_query = {
	"DELETE FROM %1$s.presence_topic_seq s"
	" WHERE s.topic" EQ "ANY ($1) AND s.topic" GT "''"
	" AND s.changed_ts" LE "$2 AND NOT EXISTS"
	" (SELECT FROM %1$s.tep_presence p WHERE p.topic" EQ "s.topic)"
	" RETURNING s.seq",
	2, {TEXTARRAYOID, INT8OID}
};

static PresenceQuery raise_floor_query = {
	"INSERT INTO %1$s.presence_topic_seq AS s (topic, seq, changed_ts)"
	" VALUES ('', $1, $2) ON CONFLICT (topic) DO UPDATE"
	" SET seq = GREATEST(s.seq, excluded.seq)",
	2, {INT8OID, INT8OID}
};

void
presence_define_retention_gucs(void)
{
	DefineCustomIntVariable("presence.topic_retention",
							"Time after which an empty topic's seq row is removed.",
							"An empty topic without diffs for this long loses its row; "
							"if it comes back, its seq goes on above every removed one. "
							"0 keeps every row.",
							&presence_topic_retention_s,
							SECS_PER_DAY, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * Remove the rows of `topics` (`names`, sorted) that are still idle since
 * `cutoff`, under the topics' locks, as a commit of them would take, and
 * raise the floor to their seqs.  Returns how many went.  The tables are
 * locked first, as at commit.
 */
static int
remove_topics(Datum topics, const char **names, int ntopics, int64 cutoff)
{
	Datum		args[2];
	int64		highest = 0;
	uint64		removed;

	table_close(table_open(presence_table(PRESENCE_SEQS), RowExclusiveLock),
				NoLock);
	table_close(table_open(presence_table(PRESENCE_ENTRIES), AccessShareLock),
				NoLock);
	presence_lock_topics(names, ntopics);

	args[0] = topics;
	args[1] = Int64GetDatum(cutoff);
	presence_execute(&remove_query, args, NULL, false, 0);
	removed = SPI_processed;
	for (uint64 i = 0; i < removed; i++)
	{
		bool		isnull;

		highest = Max(highest,
					  DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1,
												  &isnull)));
	}
	SPI_freetuptable(SPI_tuptable);
	if (removed > 0)
	{
		args[0] = Int64GetDatum(highest);
		args[1] = Int64GetDatum(presence_now_s());
		presence_execute(&raise_floor_query, args, NULL, false, 0);
	}
	return (int) removed;
}

/*
 * One batch of the walk: the `limit` rows after `*after` (NULL to start;
 * then the last topic seen, whole, in `keep`: a row written over the byte
 * limits before 1.1 must not cut the walk's place short and be read again),
 * adding the topics idle since `cutoff` to `idle`.  Returns whether the
 * walk reached the table's end.  The caller is connected to SPI.
 */
static bool
walk_batch(char **after, MemoryContext keep, int limit, int64 cutoff,
		   List **idle)
{
	Datum		args[3];
	uint64		nrows;

	args[0] = CStringGetTextDatum(*after != NULL ? *after : "");
	args[1] = Int64GetDatum(limit);
	args[2] = Int64GetDatum(cutoff);
	presence_execute(&walk_query, args, NULL, true, 0);
	nrows = SPI_processed;
	for (uint64 i = 0; i < nrows; i++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
									   SPI_tuptable->tupdesc, 2, &isnull)))
			*idle = lappend(*idle,
							SPI_getvalue(SPI_tuptable->vals[i],
										 SPI_tuptable->tupdesc, 1));
	}
	if (nrows > 0)
	{
		if (*after != NULL)
			pfree(*after);
		*after = MemoryContextStrdup(keep,
									 SPI_getvalue(SPI_tuptable->vals[nrows - 1],
												  SPI_tuptable->tupdesc, 1));
	}
	SPI_freetuptable(SPI_tuptable);
	return nrows < (uint64) limit;
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * Remove the rows of the `idle` topics still idle since `cutoff`.
 */
static int
remove_idle(List *idle, int64 cutoff)
{
	Datum	   *topics;
	const char **names;
	int			n = 0;
	ListCell   *cell;

	if (idle == NIL)
		return 0;
	topics = palloc(list_length(idle) * sizeof(Datum));
	names = palloc(list_length(idle) * sizeof(char *));
	foreach(cell, idle)
	{
		names[n] = lfirst(cell);
		topics[n++] = CStringGetTextDatum((char *) lfirst(cell));
	}
	/* In the commits' lock order (the walk's is the collation's). */
	qsort(names, n, sizeof(char *), compare_names);
	return remove_topics(PointerGetDatum(construct_array(topics, n, TEXTOID,
														 -1, false,
														 TYPALIGN_INT)),
						 names, n, cutoff);
}

/*
 * Whether the installation has 1.1's changed_ts: a 1.0 one keeps its rows.
 */
static bool
has_changed_ts(void)
{
	return get_attnum(presence_table(PRESENCE_SEQS), "changed_ts") !=
		InvalidAttrNumber;
}

/* The walk of the background worker, across its ticks. */
static char *walk_after = NULL;	/* in TopMemoryContext */
static bool walking = false;
static TimestampTz walk_started = 0;
static int	batches_this_tick = 0;

/*
 * Whether the worker has retention batches to run this tick.
 */
bool
presence_retention_due(void)
{
	int			interval_s = Min(presence_topic_retention_s,
								 RETENTION_WALK_INTERVAL_S);

	batches_this_tick = 0;
	if (presence_topic_retention_s == 0)
		return false;
	if (!walking &&
		TimestampDifferenceExceeds(walk_started, GetCurrentTimestamp(),
								   interval_s * 1000))
	{
		walking = true;
		walk_started = GetCurrentTimestamp();
		if (walk_after != NULL)
			pfree(walk_after);
		walk_after = NULL;
	}
	return walking;
}

/*
 * The worker's next retention batch, in its own transaction (connected to
 * SPI); *more while the tick may run another.
 */
int
presence_retention_worker_batch(int limit, bool *more)
{
	int64		cutoff = presence_now_s() - presence_topic_retention_s;
	List	   *idle = NIL;
	bool		done;
	int			removed;

	if (!has_changed_ts())
	{
		walking = false;
		*more = false;
		return 0;
	}
	done = walk_batch(&walk_after, TopMemoryContext, limit, cutoff, &idle);
	removed = remove_idle(idle, cutoff);
	if (done)
		walking = false;
	*more = !done && ++batches_this_tick < RETENTION_BATCHES_PER_TICK;
	return removed;
}

/*
 * presence_remove_idle_topics(older_than interval): removes now the seq
 * rows of the topics empty and without diffs for older_than (NULL:
 * presence.topic_retention), as the background worker does over time;
 * returns how many went.
 */
PRESENCE_FUNCTION(presence_remove_idle_topics, true)
{
	int64		older_than_s = presence_topic_retention_s;
	MemoryContext call_context = CurrentMemoryContext;
	char	   *after = NULL;
	List	   *idle = NIL;
	int64		cutoff;
	int			removed;

	if (!PG_ARGISNULL(0))
	{
		Interval   *older_than = PG_GETARG_INTERVAL_P(0);
		int64		usecs = older_than->time +
			(int64) older_than->day * USECS_PER_DAY +
			(int64) older_than->month * DAYS_PER_MONTH * USECS_PER_DAY;

		if (usecs < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("older_than must not be negative")));
		older_than_s = usecs / USECS_PER_SEC;
	}

	cutoff = presence_now_s() - older_than_s;
	presence_spi_connect();
	do
		CHECK_FOR_INTERRUPTS();
	while (!walk_batch(&after, call_context, presence_batch_size, cutoff,
					   &idle));
	removed = remove_idle(idle, cutoff);
	SPI_finish();
	PG_RETURN_INT32(removed);
}
