/*
 * diff.c
 *		Diff encoding (Tep's wire format), NOTIFY, and the per-topic seq
 *		that orders diffs.
 *
 * Every change to a topic's entries first takes the topic's lock: a
 * transaction-scoped heavyweight lock keyed by a hash of the topic, held to
 * commit.  Writers of one topic therefore commit one after the other, each
 * reading the seq its predecessor committed, and NOTIFY queues their diffs
 * in commit order: listeners see 1, 2, 3...  A change spanning topics takes
 * their locks in key order, so two of them cannot deadlock.  Since the lock
 * keeps every other writer off a topic's seq row, a single change advances
 * it in place, with no statement.
 */
#include "presence.h"
#include "compat.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/snapmgr.h"

/* async.c's NOTIFY_PAYLOAD_MAX_LENGTH: payloads must be shorter. */
#define PRESENCE_NOTIFY_MAX_BYTES (BLCKSZ - NAMEDATALEN - 128)

/*
 * Topic locks are advisory-type locks with this objsubid in pg_locks; SQL's
 * pg_advisory_lock uses 1 and 2, so an application's own keys never
 * collide with ours.
 */
#define PRESENCE_TOPIC_LOCK_SUBID 0x7072

static const char *const diff_kind_names[] = {"join", "leave", "status"};

static PresenceQuery create_seq_query = {
	"INSERT INTO %1$s.presence_topic_seq (topic, seq) VALUES ($1, 1)",
	1, {TEXTOID}
};

static PresenceQuery read_seqs_query = {
	"SELECT topic, seq FROM %1$s.presence_topic_seq WHERE topic" EQ "ANY ($1)",
	1, {TEXTARRAYOID}
};

static PresenceQuery store_seqs_query = {
	"INSERT INTO %1$s.presence_topic_seq (topic, seq)"
	" SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))"
	" ON CONFLICT (topic) DO UPDATE SET seq = excluded.seq",
	2, {TEXTARRAYOID, INT8ARRAYOID}
};

/*
 * Read a row of PRESENCE_ENTRY_COLUMNS into an entry.
 */
void
presence_entry_from_tuple(PresenceEntry *entry, HeapTuple tuple,
						  TupleDesc tupdesc)
{
	bool		isnull;

#define TEXT_COLUMN(n) TextDatumGetCString(SPI_getbinval(tuple, tupdesc, n, &isnull))
	entry->worker_id = TEXT_COLUMN(1);
	entry->topic = TEXT_COLUMN(2);
	entry->fd = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 3, &isnull));
	entry->principal_id = TEXT_COLUMN(4);
	entry->kind = TEXT_COLUMN(5);
	entry->agent_id = TEXT_COLUMN(6);
	entry->since_ts = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 7, &isnull));
	entry->status_state = TEXT_COLUMN(8);
	entry->status_note = TEXT_COLUMN(9);
	entry->status_until = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 10,
													  &isnull));
#undef TEXT_COLUMN
}

/*
 * Append Tep's entry fields, topic through until_ts, in Tep's order.
 */
void
presence_append_entry_fields(StringInfo buf, const PresenceEntry *entry)
{
	appendStringInfoString(buf, "\"topic\":");
	escape_json(buf, entry->topic);
	appendStringInfoString(buf, ",\"principal\":");
	escape_json(buf, entry->principal_id);
	appendStringInfoString(buf, ",\"ekind\":");
	escape_json(buf, entry->kind);
	appendStringInfoString(buf, ",\"agent_id\":");
	escape_json(buf, entry->agent_id);
	appendStringInfo(buf, ",\"fd\":%d,\"since\":" INT64_FORMAT ",\"state\":",
					 entry->fd, entry->since_ts);
	escape_json(buf, entry->status_state);
	appendStringInfoString(buf, ",\"note\":");
	escape_json(buf, entry->status_note);
	appendStringInfo(buf, ",\"until_ts\":" INT64_FORMAT, entry->status_until);
}

/*
 * Build the wire payload <N>:presence:<topic><json>, N counting characters.
 */
static void
build_diff(StringInfo buf, PresenceDiffKind kind, const PresenceEntry *entry,
		   int64 seq)
{
	int			dtopic_chars;

	dtopic_chars = strlen(PRESENCE_DIFF_TOPIC_PREFIX) +
		pg_mbstrlen_with_len(entry->topic, strlen(entry->topic));
	appendStringInfo(buf, "%d:" PRESENCE_DIFF_TOPIC_PREFIX "%s{\"kind\":\"%s\",",
					 dtopic_chars, entry->topic, diff_kind_names[kind]);
	presence_append_entry_fields(buf, entry);
	appendStringInfo(buf, ",\"seq\":" INT64_FORMAT ",\"worker_id\":", seq);
	escape_json(buf, entry->worker_id);
	appendStringInfoChar(buf, '}');
}

/*
 * The payload of one diff; an ERROR if NOTIFY could not carry it.
 */
char *
presence_encode_diff(PresenceDiffKind kind, const PresenceEntry *entry,
					 int64 seq)
{
	StringInfoData buf;

	initStringInfo(&buf);
	build_diff(&buf, kind, entry, seq);
	if (buf.len >= PRESENCE_NOTIFY_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic, principal_id, agent_id and note are too long for one presence diff"),
				 errdetail("The diff would take %d bytes; a NOTIFY payload must be shorter than %d bytes.",
						   buf.len, PRESENCE_NOTIFY_MAX_BYTES)));
	return buf.data;
}

/*
 * ERROR unless every diff this entry can produce fits NOTIFY: the longest
 * kind with the widest seq.  Lets track refuse before it changes anything,
 * and tep_presence's CHECK refuse any row that could not leave.
 */
void
presence_check_diff_fits(const PresenceEntry *entry)
{
	pfree(presence_encode_diff(PRESENCE_DIFF_STATUS, entry, PG_INT64_MAX));
}

static uint64
topic_lock_key(const char *topic)
{
	return hash_bytes_extended((const unsigned char *) topic, strlen(topic), 0);
}

static int
compare_keys(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

/*
 * Take the locks of these topics, in key order, until the transaction ends.
 */
static void
lock_topics(char **topics, int ntopics)
{
	uint64	   *keys = palloc(ntopics * sizeof(uint64));

	for (int i = 0; i < ntopics; i++)
		keys[i] = topic_lock_key(topics[i]);
	qsort(keys, ntopics, sizeof(uint64), compare_keys);
	for (int i = 0; i < ntopics; i++)
	{
		LOCKTAG		tag;

		if (i > 0 && keys[i] == keys[i - 1])
			continue;
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (keys[i] >> 32),
							 (uint32) keys[i], PRESENCE_TOPIC_LOCK_SUBID);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	pfree(keys);
}

/*
 * Advance the seq of a topic whose lock we hold, and return it.  The row is
 * found through its primary key and updated in place (indexed again only if
 * the update is not HOT, as catalog updates do): no other writer can touch
 * it, so neither a plan nor ON CONFLICT's speculative insertion is needed.
 * A topic's first diff inserts its row with a statement.
 */
static int64
advance_seq(const char *topic)
{
	Relation	rel = table_open(presence_table(PRESENCE_SEQS),
								 RowExclusiveLock);
	Relation	index = index_open(presence_primary_key_index(rel),
								   RowExclusiveLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int64		seq = 1;

	/* A fresh snapshot: the lock's previous holder has committed by now. */
	if (presence_find_by_key(rel, index, topic, GetLatestSnapshot(), slot))
	{
		HeapTuple	old_row = ExecFetchSlotHeapTuple(slot, false, NULL);
		Datum		values[2] = {0};
		bool		nulls[2] = {false, false};
		bool		replace[2] = {false, true};
		HeapTuple	new_row;
		bool		isnull;
		bool		reindex;

		seq = DatumGetInt64(slot_getattr(slot, 2, &isnull)) + 1;
		values[1] = Int64GetDatum(seq);
		new_row = heap_modify_tuple(old_row, RelationGetDescr(rel), values,
									nulls, replace);
#if PG_VERSION_NUM >= 160000
		{
			TU_UpdateIndexes update_indexes;

			simple_heap_update(rel, &old_row->t_self, new_row,
							   &update_indexes);
			reindex = update_indexes != TU_None;
		}
#else
		simple_heap_update(rel, &old_row->t_self, new_row);
		reindex = !HeapTupleIsHeapOnly(new_row);
#endif
		if (reindex)
		{
			Datum		key = slot_getattr(slot, 1, &isnull);

			index_insert(index, &key, &isnull, &new_row->t_self, rel,
						 UNIQUE_CHECK_YES, false, BuildIndexInfo(index));
		}
	}
	else
	{
		Datum		topic_datum = CStringGetTextDatum(topic);

		presence_execute(&create_seq_query, &topic_datum, NULL, false, 0);
	}

	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return seq;
}

/*
 * Change at most one entry of one topic under the topic's lock, advance the
 * topic's seq if it changed, and emit its diff.  The query is a
 * PRESENCE_CHANGE_ONE statement.  Returns whether an entry changed.
 */
bool
presence_change_one(PresenceDiffKind kind, const char *topic,
					PresenceQuery *change, Datum *values, const char *nulls)
{
	PresenceEntry entry;

	lock_topics((char **) &topic, 1);
	presence_execute(change, values, nulls, false, 0);
	if (SPI_processed == 0)
		return false;

	presence_entry_from_tuple(&entry, SPI_tuptable->vals[0],
							  SPI_tuptable->tupdesc);
	Async_Notify(presence_channel,
				 presence_encode_diff(kind, &entry, advance_seq(topic)));
	return true;
}

static int
compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Diffs of one batch go out per topic, then oldest first. */
static int
compare_entries(const void *a, const void *b)
{
	const PresenceEntry *x = a;
	const PresenceEntry *y = b;
	int			c = strcmp(x->topic, y->topic);

	if (c != 0)
		return c;
	if (x->since_ts != y->since_ts)
		return x->since_ts < y->since_ts ? -1 : 1;
	c = strcmp(x->worker_id, y->worker_id);
	if (c != 0)
		return c;
	return (x->fd > y->fd) - (x->fd < y->fd);
}

/*
 * Change up to `limit` entries, possibly of many topics, emitting one diff
 * each.
 *
 * `candidates` takes the caller's values then a bigint limit, and returns
 * (ctid, topic) of the entries to change.  Their topics are locked; then
 * `change` runs with (tid[], topic[], the caller's values...),
 * re-checking its condition, and returns the changed rows.  *more tells
 * the caller to call again: the limit was reached, or a candidate changed
 * under us before its topic was locked (a new row version, a new ctid) and
 * must be found again.
 */
int
presence_change_locked(PresenceDiffKind kind, PresenceQuery *candidates,
					   PresenceQuery *change, Datum *values, const char *nulls,
					   int nvalues, int limit, bool *more)
{
	Datum		args[8];
	char		arg_nulls[8];
	SPITupleTable *found;
	uint64		nfound;
	ItemPointerData *tids;
	Datum	   *tid_datums;
	char	  **topics;
	Datum	   *topic_datums;
	int64	   *seqs;
	Datum	   *seq_datums;
	Datum		topic_array;
	int			ntopics;
	uint64		nchanged;
	PresenceEntry *entries;
	Datum		store_args[2];

	Assert(nvalues + 2 <= lengthof(args));
	for (int i = 0; i < nvalues; i++)
	{
		args[i] = values[i];
		arg_nulls[i] = nulls ? nulls[i] : ' ';
	}
	args[nvalues] = Int64GetDatum(limit);
	arg_nulls[nvalues] = ' ';
	presence_execute(candidates, args, arg_nulls, false, 0);
	found = SPI_tuptable;
	nfound = SPI_processed;
	*more = (nfound >= (uint64) limit);
	if (nfound == 0)
		return 0;

	tids = palloc(nfound * sizeof(ItemPointerData));
	tid_datums = palloc(nfound * sizeof(Datum));
	topics = palloc(nfound * sizeof(char *));
	for (uint64 i = 0; i < nfound; i++)
	{
		bool		isnull;

		tids[i] = *(ItemPointer) DatumGetPointer(SPI_getbinval(found->vals[i],
													 found->tupdesc, 1,
													 &isnull));
		tid_datums[i] = PointerGetDatum(&tids[i]);
		topics[i] = TextDatumGetCString(SPI_getbinval(found->vals[i],
													  found->tupdesc, 2,
													  &isnull));
	}
	SPI_freetuptable(found);

	/* Distinct topics, sorted for bsearch. */
	qsort(topics, nfound, sizeof(char *), compare_strings);
	ntopics = 0;
	for (uint64 i = 0; i < nfound; i++)
		if (ntopics == 0 || strcmp(topics[ntopics - 1], topics[i]) != 0)
			topics[ntopics++] = topics[i];

	lock_topics(topics, ntopics);

	/* Each topic's current seq, read under its lock; 0 when it has none. */
	topic_datums = palloc(ntopics * sizeof(Datum));
	seqs = palloc0(ntopics * sizeof(int64));
	for (int i = 0; i < ntopics; i++)
		topic_datums[i] = CStringGetTextDatum(topics[i]);
	args[0] = PointerGetDatum(construct_array(topic_datums, ntopics, TEXTOID,
											  -1, false, TYPALIGN_INT));
	presence_execute(&read_seqs_query, args, NULL, false, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		char	   *topic = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[i],
															  SPI_tuptable->tupdesc,
															  1, &isnull));
		char	  **slot = bsearch(&topic, topics, ntopics, sizeof(char *),
								   compare_strings);

		seqs[slot - topics] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc,
														  2, &isnull));
	}
	topic_array = args[0];

	args[0] = PointerGetDatum(construct_array(tid_datums, (int) nfound, TIDOID,
											  sizeof(ItemPointerData), false,
											  TYPALIGN_SHORT));
	args[1] = topic_array;
	arg_nulls[0] = arg_nulls[1] = ' ';
	for (int i = 0; i < nvalues; i++)
	{
		args[i + 2] = values[i];
		arg_nulls[i + 2] = nulls ? nulls[i] : ' ';
	}
	presence_execute(change, args, arg_nulls, false, 0);
	nchanged = SPI_processed;
	if (nchanged < nfound)
		*more = true;
	if (nchanged == 0)
		return 0;

	entries = palloc(nchanged * sizeof(PresenceEntry));
	for (uint64 i = 0; i < nchanged; i++)
		presence_entry_from_tuple(&entries[i], SPI_tuptable->vals[i],
								  SPI_tuptable->tupdesc);
	SPI_freetuptable(SPI_tuptable);
	qsort(entries, nchanged, sizeof(PresenceEntry), compare_entries);

	for (uint64 i = 0; i < nchanged; i++)
	{
		char	  **slot = bsearch(&entries[i].topic, topics, ntopics,
								   sizeof(char *), compare_strings);
		int			t;

		if (slot == NULL)
			elog(ERROR, "presence: changed an entry of a topic not locked");
		t = (int) (slot - topics);

		seqs[t]++;
		Async_Notify(presence_channel,
					 presence_encode_diff(kind, &entries[i], seqs[t]));
	}

	seq_datums = palloc(ntopics * sizeof(Datum));
	for (int i = 0; i < ntopics; i++)
		seq_datums[i] = Int64GetDatum(seqs[i]);
	store_args[0] = topic_array;
	store_args[1] = PointerGetDatum(construct_array(seq_datums, ntopics,
													INT8OID, sizeof(int64),
													FLOAT8PASSBYVAL,
													TYPALIGN_DOUBLE));
	presence_execute(&store_seqs_query, store_args, NULL, false, 0);

	return (int) nchanged;
}
