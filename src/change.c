/*
 * change.c
 *		The change engine: entries change at the statement, their diffs wait
 *		in the transaction and are sequenced and sent at commit.
 *
 * A presence call changes its rows like any statement and records each
 * diff, encoded but for its seq, in the transaction's pending list; it
 * takes no lock but its rows'.  So presence calls wait for each other only
 * where plain SQL would (the same entry), never deadlock among themselves,
 * and an open transaction holds up nobody else's topic.
 *
 * At pre-commit the transaction locks its topics, in topic order (so that
 * no two commits wait for each other in a cycle), reads each one's last
 * seq as committed, gives its diffs the next seqs in statement order,
 * stores the new seqs and queues the diffs with NOTIFY (on
 * presence.channel, the topic's own channel or both: presence.delivery).
 * A topic's lock is held until the commit has ended, after
 * PreCommit_Notify, which runs right after, has put the diffs in the
 * queue: the next commit of the topic reads its seq only then, so a
 * topic's seq order is its queue order, at every isolation level, and a
 * rolled-back transaction or savepoint leaves no gap.  Only NOTIFY's own
 * queue insertion is done under NOTIFY's cluster-wide commit lock: the
 * seqs are read and stored before it, and commits of other topics do not
 * wait for them.  A commit of more than PRESENCE_TOPIC_LOCKS topics takes
 * the whole database's topics at once instead: the lock table has about
 * max_locks_per_transaction slots per connection, and a commit must not
 * run out of them.
 */
#include "presence.h"
#include "compat.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "common/hashfn.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* A topic with diffs in this transaction. */
typedef struct PendingTopic
{
	char	   *topic;			/* hash key: the whole topic, never cut */
	bool		has_diffs;		/* some not rolled back, at commit */
	bool		seq_known;		/* seq and row read, at commit */
	char		channel[NAMEDATALEN];	/* its own channel, at commit */
	bool		has_row;
	ItemPointerData row;
	int64		seq;			/* the last seq given */
} PendingTopic;

/* A diff waiting for its seq. */
typedef struct PendingDiff
{
	PendingTopic *topic;
	char	   *channel;		/* presence.channel at the statement */
	char	   *text;			/* the payload but for its seq */
	int			len;
	int			seq_at;			/* where the seq goes in text */
	int			json_at;		/* where its JSON starts */
	int			nest_level;		/* (sub)transaction that recorded it */
} PendingDiff;

/*
 * This transaction's diffs, in TopTransactionContext.  Most transactions
 * touch one topic, so the first one needs no hash table.
 */
static PendingDiff *pending = NULL;
static int	npending = 0;
static int	pending_capacity = 0;
static PendingTopic *first_topic = NULL;
static HTAB *other_topics = NULL;
static int	xact_delivery;		/* presence.delivery at the first diff */

/* Encoding buffer, reused by every diff. */
static StringInfoData encode_buf;

static PresenceQuery worker_candidates_query = {
	"SELECT ctid FROM %1$s.tep_presence WHERE worker_id" EQ "$1"
	" ORDER BY fd LIMIT $2",
	2, {TEXTOID, INT8OID}
};

static PresenceQuery drop_worker_query = {
	"DELETE FROM %1$s.tep_presence"
	" WHERE ctid" EQ "ANY ($1) AND worker_id" EQ "$2"
	" RETURNING " PRESENCE_ENTRY_COLUMNS,
	2, {TIDARRAYOID, TEXTOID},
	BATCH_PLAN
};

static PresenceQuery fd_candidates_query = {
	"SELECT ctid FROM %1$s.tep_presence"
	" WHERE worker_id" EQ "$1 AND fd" EQ "$2 LIMIT $3",
	3, {TEXTOID, INT4OID, INT8OID}
};

static PresenceQuery drop_fd_query = {
	"DELETE FROM %1$s.tep_presence"
	" WHERE ctid" EQ "ANY ($1) AND worker_id" EQ "$2 AND fd" EQ "$3"
	" RETURNING " PRESENCE_ENTRY_COLUMNS,
	3, {TIDARRAYOID, TEXTOID, INT4OID},
	BATCH_PLAN
};

/*
 * The pending topics are keyed by the whole topic (a pointer to it), so
 * that two topics that begin alike never share a seq, whatever writer put
 * them in the table.
 */
static uint32
topic_key_hash(const void *key, Size keysize)
{
	const char *topic = *(const char *const *) key;

	return hash_bytes((const unsigned char *) topic, strlen(topic));
}

static int
topic_key_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

/*
 * The pending topic of this name, added if new.
 */
static PendingTopic *
pending_topic(const char *topic)
{
	PendingTopic *found;
	bool		exists;

	if (first_topic != NULL && strcmp(first_topic->topic, topic) == 0)
		return first_topic;
	if (first_topic == NULL)
	{
		first_topic = MemoryContextAllocZero(TopTransactionContext,
											 sizeof(PendingTopic));
		first_topic->topic = MemoryContextStrdup(TopTransactionContext, topic);
		return first_topic;
	}
	if (other_topics == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(char *);
		ctl.entrysize = sizeof(PendingTopic);
		ctl.hash = topic_key_hash;
		ctl.match = topic_key_match;
		ctl.hcxt = TopTransactionContext;
		other_topics = hash_create("presence pending topics", 64, &ctl,
								   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
								   HASH_CONTEXT);
	}
	found = hash_search(other_topics, &topic, HASH_ENTER, &exists);
	if (!exists)
	{
		found->topic = MemoryContextStrdup(TopTransactionContext, topic);
		found->has_diffs = false;
		found->seq_known = false;
		found->has_row = false;
		found->seq = 0;
	}
	return found;
}

/*
 * Record the diff of a change this statement made; it is sent at commit,
 * or dropped with the (sub)transaction.  A leave also records the session
 * in the history (when on), in the same statement.
 */
void
presence_record_diff(PresenceDiffKind kind, const PresenceEntry *entry)
{
	PendingDiff *diff;

	if (kind == PRESENCE_DIFF_LEAVE)
		presence_history_record(entry);

	if (encode_buf.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&encode_buf);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(&encode_buf);

	if (npending == pending_capacity)
	{
		pending_capacity = pending_capacity == 0 ? 16 : pending_capacity * 2;
		pending = pending == NULL ?
			MemoryContextAlloc(TopTransactionContext,
							   pending_capacity * sizeof(PendingDiff)) :
			repalloc_huge(pending, pending_capacity * sizeof(PendingDiff));
	}
	if (npending == 0)
		xact_delivery = presence_delivery;
	diff = &pending[npending];
	diff->seq_at = presence_encode_diff(&encode_buf, kind, entry,
										&diff->json_at);
	diff->len = encode_buf.len;
	diff->text = MemoryContextAlloc(TopTransactionContext, encode_buf.len);
	memcpy(diff->text, encode_buf.data, encode_buf.len);
	diff->topic = pending_topic(entry->topic);
	diff->channel = npending > 0 &&
		strcmp(pending[npending - 1].channel, presence_broadcast_channel) == 0 ?
		pending[npending - 1].channel :
		MemoryContextStrdup(TopTransactionContext, presence_broadcast_channel);
	diff->nest_level = GetCurrentTransactionNestLevel();
	npending++;
}

/*
 * Forget the pending diffs; their memory goes with TopTransactionContext.
 */
static void
forget_pending(void)
{
	pending = NULL;
	npending = 0;
	pending_capacity = 0;
	first_topic = NULL;
	other_topics = NULL;
}

/*
 * Read the topic's committed seq.  Under the topic's lock every earlier
 * presence commit of it has ended, so the one live row version is the
 * committed one; reading it with SnapshotSelf, not the transaction's snapshot, keeps
 * REPEATABLE READ from handing out a seq again, and takes no SSI lock.  A
 * topic without a row goes on from the floor (retention.c): the empty
 * topic's row, or 0.
 */
static void
read_seq(Relation rel, Relation index, TupleTableSlot *slot,
		 PendingTopic *topic)
{
	bool		isnull;

	topic->has_row = presence_find_by_key(rel, index, topic->topic,
										  SnapshotSelf, slot);
	if (topic->has_row)
		topic->row = slot->tts_tid;
	if (topic->has_row || presence_find_by_key(rel, index, "", SnapshotSelf,
											   slot))
		topic->seq = DatumGetInt64(slot_getattr(slot, 2, &isnull));
	else
		topic->seq = 0;
	topic->seq_known = true;
	if (xact_delivery != PRESENCE_DELIVERY_BROADCAST)
		presence_topic_channel(topic->topic, topic->channel);
}

/*
 * Store the topic's new seq, and (1.1) when it changed, changed_ts: its
 * row updated in place (indexed again only when the update is not HOT), or
 * inserted for a topic's first diff.  No other writer can touch the row
 * under the topic's lock, so neither a plan nor ON CONFLICT is needed,
 * and no snapshot can make the update fail.
 */
static void
store_seq(Relation rel, Relation index, PendingTopic *topic)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	HeapTuple	row;
	bool		reindex;

	values[0] = CStringGetTextDatum(topic->topic);
	values[1] = Int64GetDatum(topic->seq);
	values[2] = Int64GetDatum(presence_now_s());	/* 1.0: no such column */
	row = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	if (topic->has_row)
	{
#if PG_VERSION_NUM >= 160000
		TU_UpdateIndexes update_indexes;

		simple_heap_update(rel, &topic->row, row, &update_indexes);
		reindex = update_indexes != TU_None;
#else
		simple_heap_update(rel, &topic->row, row);
		reindex = !HeapTupleIsHeapOnly(row);
#endif
	}
	else
	{
		simple_heap_insert(rel, row);
		reindex = true;
	}
	if (reindex)
		index_insert(index, &values[0], &nulls[0], &row->t_self, rel,
					 UNIQUE_CHECK_YES, false, BuildIndexInfo(index));
	heap_freetuple(row);
}

/*
 * The seq table's primary key, which must be its only index: store_seq
 * maintains that one.
 */
static Oid
seq_table_index(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);

	if (list_length(indexes) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("presence_topic_seq must have its primary key as its only index")));
	list_free(indexes);
	return presence_primary_key_index(rel);
}

/*
 * The topic locks of the commit step: advisory lock tags of this database
 * with a fourth field SQL's advisory functions never use (they use 1 and
 * 2).  A topic's tag holds a 64-bit hash of its name (two topics sharing
 * one only wait for each other); the tag of every topic has the hash 0.
 * A commit takes every topic's lock shared, then its topics' exclusive in
 * topic order; a commit of many topics takes every topic's exclusive.
 */
#define PRESENCE_LOCKTAG_SPACE 23

static void
lock_tag(LOCKTAG *tag, const char *topic)
{
	uint64		hash = topic == NULL ? 0 :
		hash_bytes_extended((const unsigned char *) topic, strlen(topic), 0);

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (hash >> 32),
						 (uint32) hash, PRESENCE_LOCKTAG_SPACE);
}

static void
lock_topic(const char *topic, LOCKMODE mode)
{
	LOCKTAG		tag;

	lock_tag(&tag, topic);
	(void) LockAcquire(&tag, mode, false, false);
}

/*
 * Lock the topics of the commit (or of a removal, retention.c), sorted by
 * name: each one's lock, or every topic's for more than
 * PRESENCE_TOPIC_LOCKS.
 */
void
presence_lock_topics(const char **topics, int ntopics)
{
	if (ntopics > PRESENCE_TOPIC_LOCKS)
	{
		lock_topic(NULL, ExclusiveLock);
		return;
	}
	lock_topic(NULL, RowExclusiveLock);
	for (int i = 0; i < ntopics; i++)
		lock_topic(topics[i], ExclusiveLock);
}

static int
compare_topic_names(const void *a, const void *b)
{
	return strcmp((*(PendingTopic *const *) a)->topic,
				  (*(PendingTopic *const *) b)->topic);
}

/*
 * The topics with diffs not rolled back, sorted by name; returns how many.
 */
static int
topics_to_commit(PendingTopic ***topics)
{
	int			n = 0;

	*topics = palloc(npending * sizeof(PendingTopic *));
	for (int i = 0; i < npending; i++)
	{
		PendingTopic *topic = pending[i].topic;

		if (!topic->has_diffs)
		{
			topic->has_diffs = true;
			(*topics)[n++] = topic;
		}
	}
	qsort(*topics, n, sizeof(PendingTopic *), compare_topic_names);
	return n;
}

/*
 * Give every pending diff its seq, the epoch and its signature and queue it
 * with NOTIFY, then store the topics' new seqs in `rel` (presence_topic_seq,
 * `index` its key).  Runs at pre-commit, under the topics' locks.
 */
static void
sequence_and_send(Relation rel, Relation index, PendingTopic **topics,
				  int ntopics)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	const char *epoch = presence_current_epoch();
	StringInfoData payload;

	for (int i = 0; i < ntopics; i++)
		read_seq(rel, index, slot, topics[i]);

	initStringInfo(&payload);
	for (int i = 0; i < npending; i++)
	{
		PendingDiff *diff = &pending[i];

		diff->topic->seq++;
		resetStringInfo(&payload);
		presence_finish_diff(&payload, diff->text, diff->len, diff->seq_at,
							 diff->json_at, diff->topic->seq, epoch,
							 presence_signing_key);
		if (xact_delivery != PRESENCE_DELIVERY_TOPIC)
			Async_Notify(diff->channel, payload.data);
		if (xact_delivery != PRESENCE_DELIVERY_BROADCAST)
			Async_Notify(diff->topic->channel, payload.data);
	}
	pfree(payload.data);

	for (int i = 0; i < ntopics; i++)
		store_seq(rel, index, topics[i]);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * The commit step: the seq table is opened before the topics are locked,
 * so that a transaction holding it exclusively (one that drops the
 * extension, say) is never waited for under them.
 */
static void
commit_diffs(void)
{
	Relation	rel = table_open(presence_table(PRESENCE_SEQS),
								 RowExclusiveLock);
	Relation	index = index_open(seq_table_index(rel), RowExclusiveLock);
	PendingTopic **topics;
	int			ntopics = topics_to_commit(&topics);
	const char **names = palloc(Max(ntopics, 1) * sizeof(char *));

	for (int i = 0; i < ntopics; i++)
		names[i] = topics[i]->topic;
	presence_lock_topics(names, ntopics);

	/*
	 * Writing a table with a TOAST table needs a snapshot (heap_insert's
	 * and heap_update's assertion), and none is active at pre-commit: one,
	 * as AfterTriggerFireDeferred pushes for deferred triggers.
	 */
	PushActiveSnapshot(GetTransactionSnapshot());
	sequence_and_send(rel, index, topics, ntopics);
	PopActiveSnapshot();
	pfree(names);
	pfree(topics);
	index_close(index, NoLock);
	table_close(rel, NoLock);
}

static void
presence_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (npending == 0)
				break;
			/* DROP EXTENSION in this transaction took the diffs' rows. */
			if (presence_extension_dropped())
			{
				forget_pending();
				break;
			}
			commit_diffs();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (npending > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has changed presence entries"),
						 errdetail("Its diffs are sent with NOTIFY, which PREPARE TRANSACTION does not support.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			forget_pending();
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
	}
}

/*
 * A rolled-back savepoint drops the diffs recorded since it began; a
 * released one hands them to its parent.  They are the list's tail.
 */
static void
presence_subxact_callback(SubXactEvent event, SubTransactionId subid,
						  SubTransactionId parent_subid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (event == SUBXACT_EVENT_ABORT_SUB)
		while (npending > 0 && pending[npending - 1].nest_level >= level)
			npending--;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		for (int i = npending - 1; i >= 0 && pending[i].nest_level >= level; i--)
			pending[i].nest_level = level - 1;
}

/*
 * Called once per backend from _PG_init.
 */
void
presence_register_change_callbacks(void)
{
	RegisterXactCallback(presence_xact_callback, NULL);
	RegisterSubXactCallback(presence_subxact_callback, NULL);
}

/*
 * Change at most one entry with a PRESENCE_CHANGE_ONE statement and record
 * its diff.  Returns whether an entry changed.
 */
bool
presence_change_one(PresenceDiffKind kind, PresenceQuery *change,
					Datum *values, const char *nulls)
{
	PresenceEntry entry;

	presence_execute(change, values, nulls, false, 0);
	if (SPI_processed == 0)
		return false;
	presence_entry_from_tuple(&entry, SPI_tuptable->vals[0],
							  SPI_tuptable->tupdesc);
	presence_record_diff(kind, &entry);
	return true;
}

/*
 * Run `query` with the caller's values and `extra`, before or after them.
 */
static void
execute_with(PresenceQuery *query, Datum *values, const char *values_nulls,
			 int nvalues, Datum *extra, int nextra, bool extra_first)
{
	Datum		args[8];
	char		arg_nulls[8];
	int			n = 0;

	Assert(nvalues + nextra <= lengthof(args));
	if (extra_first)
		for (int i = 0; i < nextra; i++, n++)
		{
			args[n] = extra[i];
			arg_nulls[n] = ' ';
		}
	for (int i = 0; i < nvalues; i++, n++)
	{
		args[n] = values[i];
		arg_nulls[n] = values_nulls ? values_nulls[i] : ' ';
	}
	if (!extra_first)
		for (int i = 0; i < nextra; i++, n++)
		{
			args[n] = extra[i];
			arg_nulls[n] = ' ';
		}
	presence_execute(query, args, arg_nulls, false, 0);
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
 * Phase 1 of a batch: the ctids of up to `limit` candidates, as a tid[]
 * (NULL when there are none).
 */
static Datum
find_candidates(PresenceQuery *candidates, Datum *values, const char *nulls,
				int nvalues, int limit, uint64 *nfound)
{
	Datum		limit_datum = Int64GetDatum(limit);
	ItemPointerData *tids;
	Datum	   *tid_datums;

	execute_with(candidates, values, nulls, nvalues, &limit_datum, 1, false);
	*nfound = SPI_processed;
	if (*nfound == 0)
		return (Datum) 0;

	tids = palloc(*nfound * sizeof(ItemPointerData));
	tid_datums = palloc(*nfound * sizeof(Datum));
	for (uint64 i = 0; i < *nfound; i++)
	{
		bool		isnull;

		tids[i] = *(ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc,
															   1, &isnull));
		tid_datums[i] = PointerGetDatum(&tids[i]);
	}
	SPI_freetuptable(SPI_tuptable);
	return PointerGetDatum(construct_array(tid_datums, (int) *nfound, TIDOID,
										   sizeof(ItemPointerData), false,
										   TYPALIGN_SHORT));
}

/*
 * Phase 3 of a batch: record the changed rows' diffs, in batch order.
 */
static void
record_batch(PresenceDiffKind kind, SPITupleTable *changed, uint64 nchanged)
{
	PresenceEntry *entries = palloc(nchanged * sizeof(PresenceEntry));

	for (uint64 i = 0; i < nchanged; i++)
		presence_entry_from_tuple(&entries[i], changed->vals[i],
								  changed->tupdesc);
	qsort(entries, nchanged, sizeof(PresenceEntry), compare_entries);
	for (uint64 i = 0; i < nchanged; i++)
		presence_record_diff(kind, &entries[i]);
	pfree(entries);
}

/*
 * Change up to `limit` entries, possibly of many topics, recording one
 * diff each; returns how many changed.
 *
 * `candidates` takes the caller's values then a bigint limit, and returns
 * the ctids of the entries to change; `change` takes (tid[], the caller's
 * values...), re-checks its condition and returns the changed rows.
 * *more tells the caller to call again: the limit was reached, or a
 * candidate changed in between (a new row version, a new ctid) and must
 * be found again.
 */
int
presence_change_batch(PresenceDiffKind kind, PresenceQuery *candidates,
					  PresenceQuery *change, Datum *values, const char *nulls,
					  int nvalues, int limit, bool *more)
{
	uint64		nfound;
	Datum		tids;
	uint64		nchanged;

	tids = find_candidates(candidates, values, nulls, nvalues, limit, &nfound);
	*more = (nfound >= (uint64) limit);
	if (nfound == 0)
		return 0;

	execute_with(change, values, nulls, nvalues, &tids, 1, true);
	nchanged = SPI_processed;
	if (nchanged < nfound)
		*more = true;
	if (nchanged > 0)
		record_batch(kind, SPI_tuptable, nchanged);
	SPI_freetuptable(SPI_tuptable);
	return (int) nchanged;
}

/*
 * Drop every entry of a worker (of one fd when fd >= 0) in this
 * transaction, with leave diffs, batch_size at a time.  The caller is
 * connected to SPI.
 */
int
presence_drop_entries(const char *worker_id, int32 fd)
{
	bool		one_fd = fd >= 0;
	Datum		values[2];
	int			total = 0;
	bool		more = true;

	values[0] = CStringGetTextDatum(worker_id);
	values[1] = Int32GetDatum(fd);
	while (more)
		total += presence_change_batch(PRESENCE_DIFF_LEAVE,
									   one_fd ? &fd_candidates_query :
									   &worker_candidates_query,
									   one_fd ? &drop_fd_query :
									   &drop_worker_query,
									   values, NULL, one_fd ? 2 : 1,
									   presence_batch_size, &more);
	return total;
}
