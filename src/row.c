/*
 * row.c
 *		The one-entry changes of the hot path (track, set_status,
 *		clear_status, set_meta and untrack) made without the executor, as
 *		logical replication's apply worker makes its changes
 *		(execReplication.c).
 *
 * A kept plan still pays, per call, for executor start and end, a
 * ModifyTable and an index scan node, the CHECK prepared again for the
 * statement and RETURNING's projection.  Here a change is one probe of the
 * primary key and one change through the table AM: an insert is
 * speculative, as ON CONFLICT DO NOTHING's; the newest version of a
 * concurrently changed entry is locked and used at READ COMMITTED, and a
 * transaction snapshot gets the statement's serialization failure; the
 * indexes are kept by ExecInsertIndexTuples; the CHECK's rules are checked
 * in C on the new row.
 *
 * That holds only for tep_presence as the extension made it: no trigger of
 * the change (foreign keys' included), no row security, no CHECK but its
 * own, no column of the application's, and the privileges the statement
 * would need.  Otherwise presence_change_row and presence_insert_row say
 * so, and the caller runs its statement, which honours whatever the table
 * has.
 *
 * SERIALIZABLE transactions get the executor's predicate locks and
 * conflict checks because they are taken below the executor: the key's
 * probe is an index scan with the MVCC snapshot (the B-tree locks the leaf
 * page it reads, heapam the tuple it returns, and checks the conflict
 * out); heap_insert, heap_update, heap_delete and the B-tree's insertion
 * check the conflict in; and ON CONFLICT's arbiter check, given an EState
 * with the snapshot (new_executor_state), locks the conflicting row as
 * PostgreSQL 19's ExecCheckIndexConstraints does for the statement.
 */
#include "presence.h"
#include "compat.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* tep_presence's columns, in table order (meta is 1.1's eleventh). */
static const char *const entry_columns[] = {
	"worker_id", "topic", "fd", "principal_id", "kind", "agent_id",
	"since_ts", "status_state", "status_note", "status_until", "meta"
};

#define ATTNUM_WORKER_ID 1
#define ATTNUM_TOPIC 2
#define ATTNUM_FD 3

/*
 * Whether the table has triggers the statement (INSERT, UPDATE or DELETE)
 * would fire: its own or its foreign keys', row or statement level.
 */
static bool
fires_triggers(Relation rel, CmdType cmd)
{
	TriggerDesc *t = rel->trigdesc;

	if (t == NULL)
		return false;
	if (cmd == CMD_INSERT)
		return t->trig_insert_before_row || t->trig_insert_after_row ||
			t->trig_insert_instead_row || t->trig_insert_before_statement ||
			t->trig_insert_after_statement;
	if (cmd == CMD_DELETE)
		return t->trig_delete_before_row || t->trig_delete_after_row ||
			t->trig_delete_instead_row || t->trig_delete_before_statement ||
			t->trig_delete_after_statement;
	return t->trig_update_before_row || t->trig_update_after_row ||
		t->trig_update_instead_row || t->trig_update_before_statement ||
		t->trig_update_after_statement;
}

/*
 * Whether tep_presence is as the extension made it, so that changing a row
 * here does all that the statement would.
 */
static bool
table_is_plain(Relation rel, CmdType cmd)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;
	int			ncolumns = presence_has_meta ? 11 : 10;

	if (fires_triggers(rel, cmd) || rel->rd_rel->relrowsecurity ||
		desc->natts != ncolumns || constr == NULL ||
		constr->has_generated_stored || constr->num_check != 1 ||
		strcmp(constr->check[0].ccname, "tep_presence_entry_check") != 0)
		return false;
	for (int i = 0; i < ncolumns; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, i);

		if (attr->attisdropped ||
			strcmp(NameStr(attr->attname), entry_columns[i]) != 0)
			return false;
	}
	return true;
}

/*
 * The primary key (topic, worker_id, fd) of a plain tep_presence, opened,
 * or NULL.
 */
static Relation
open_entry_key(Relation rel)
{
	Oid			index_oid = presence_primary_key_index(rel);
	Relation	index;

	if (!OidIsValid(index_oid))
		return NULL;
	index = index_open(index_oid, RowExclusiveLock);
	if (index->rd_index->indnkeyatts != 3 ||
		index->rd_index->indkey.values[0] != ATTNUM_TOPIC ||
		index->rd_index->indkey.values[1] != ATTNUM_WORKER_ID ||
		index->rd_index->indkey.values[2] != ATTNUM_FD)
	{
		index_close(index, RowExclusiveLock);
		return NULL;
	}
	return index;
}

/*
 * The visible version of the key's entry, into `slot`.
 */
static bool
find_entry(Relation rel, Relation index, Snapshot snapshot,
		   const PresenceRowKey *key, TupleTableSlot *slot)
{
	ScanKeyData keys[3];

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   CStringGetTextDatum(key->topic));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ,
						   CStringGetTextDatum(key->worker_id));
	ScanKeyEntryInitialize(&keys[2], 0, 3, BTEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT4EQ, Int32GetDatum(key->fd));
	return presence_find_by_scan_keys(rel, index, keys, 3, snapshot, slot);
}

/*
 * Whether the row in `slot` is still the key's entry (a Tep app may
 * change a key with plain SQL).
 */
static bool
slot_has_key(TupleTableSlot *slot, const PresenceRowKey *key)
{
	bool		isnull;
	char	   *topic = TextDatumGetCString(slot_getattr(slot, ATTNUM_TOPIC,
														 &isnull));
	char	   *worker_id = TextDatumGetCString(slot_getattr(slot,
															 ATTNUM_WORKER_ID,
															 &isnull));
	int32		fd = DatumGetInt32(slot_getattr(slot, ATTNUM_FD, &isnull));

	return fd == key->fd && strcmp(topic, key->topic) == 0 &&
		strcmp(worker_id, key->worker_id) == 0;
}

/*
 * The entry was changed by a transaction that committed after our
 * snapshot was taken (`result` of the update or delete).  At READ
 * COMMITTED its newest version is locked into `slot` and used, if it is
 * still the key's entry, as the executor's EvalPlanQual does; a
 * transaction snapshot may not see it, which is a serialization failure.
 * Returns false when there is no entry left to change.
 */
static bool
follow_changed_entry(Relation rel, Snapshot snapshot, CommandId cid,
					 LockTupleMode mode, TM_Result result,
					 const PresenceRowKey *key, TupleTableSlot *slot)
{
	TM_FailureData tmfd;
	ItemPointerData tid = slot->tts_tid;

	if (result != TM_Updated && result != TM_Deleted)
		elog(ERROR, "presence: unexpected result %d changing an entry",
			 (int) result);
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent %s",
						result == TM_Updated ? "update" : "delete")));
	if (result == TM_Deleted)
		return false;

	result = table_tuple_lock(rel, &tid, snapshot, slot, cid, mode,
							  LockWaitBlock,
							  TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
	if (result == TM_Deleted)
		return false;
	if (result != TM_Ok)
		elog(ERROR, "presence: unexpected result %d locking an entry",
			 (int) result);
	return slot_has_key(slot, key);
}

/*
 * An EState as ExecutorStart would give the statement: its snapshot and
 * command id.  PostgreSQL 19's ExecCheckIndexConstraints reads the
 * conflicting row with es_snapshot in SERIALIZABLE transactions (its
 * predicate lock); without it, that read crashed the backend.
 */
static EState *
new_executor_state(Snapshot snapshot, CommandId cid)
{
	EState	   *estate = CreateExecutorState();

	estate->es_snapshot = snapshot;
	estate->es_output_cid = cid;
	return estate;
}

/*
 * Executor state for keeping tep_presence's indexes; `speculative` also
 * readies what ON CONFLICT needs of its unique indexes.
 */
static ResultRelInfo *
open_indexes(Relation rel, bool speculative)
{
	ResultRelInfo *result_rel = makeNode(ResultRelInfo);

	InitResultRelInfo(result_rel, rel, 0, NULL, 0);
	ExecOpenIndices(result_rel, speculative);
	return result_rel;
}

/*
 * Index the new version of an updated entry (a non-HOT update): every
 * index, or only the summarizing ones (16+, TU_Summarizing).
 */
static void
index_new_version(Relation rel, Snapshot snapshot, CommandId cid,
				  TupleTableSlot *slot, bool only_summarizing)
{
	EState	   *estate = new_executor_state(snapshot, cid);
	ResultRelInfo *result_rel = open_indexes(rel, false);

	list_free(presence_insert_index_tuples(result_rel, slot, estate, false,
										   NULL, NIL, only_summarizing));
	ExecCloseIndices(result_rel);
	FreeExecutorState(estate);
}

/*
 * The new version of the entry in `old`, with `set` applied, into `new`;
 * ERROR as the CHECK would when it breaks its rules.
 */
static void
form_new_version(Relation rel, TupleTableSlot *old, const PresenceRowSet *set,
				 TupleTableSlot *new, PresenceEntry *entry)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum		values[11];
	bool		nulls[11];
	bool		replace[11] = {false};
	HeapTuple	tuple;

	for (int i = 0; i < set->ncolumns; i++)
	{
		values[set->attnums[i] - 1] = set->values[i];
		nulls[set->attnums[i] - 1] = false;
		replace[set->attnums[i] - 1] = true;
	}
	tuple = heap_modify_tuple(ExecFetchSlotHeapTuple(old, false, NULL), desc,
							  values, nulls, replace);
	presence_entry_from_tuple(entry, tuple, desc);
	presence_check_entry_rules(entry, RelationGetRelationName(rel));
	ExecStoreHeapTuple(tuple, new, true);
}

/*
 * Update the entry found in `old` with `set`; `new` receives the new
 * version and `entry` its fields.  False when it was deleted meanwhile.
 */
static bool
update_entry(Relation rel, Snapshot snapshot, CommandId cid,
			 const PresenceRowKey *key, const PresenceRowSet *set,
			 TupleTableSlot *old, TupleTableSlot *new, PresenceEntry *entry)
{
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	PresenceUpdateIndexes update_indexes;
	TM_Result	result;

	for (;;)
	{
		ItemPointerData tid = old->tts_tid;

		form_new_version(rel, old, set, new, entry);
		result = presence_tuple_update(rel, &tid, new, cid, snapshot, &tmfd,
									   &lockmode, &update_indexes);
		if (result == TM_Ok)
			break;
		if (!follow_changed_entry(rel, snapshot, cid, LockTupleNoKeyExclusive,
								  result, key, old))
			return false;
	}
	if (PRESENCE_UPDATE_INDEXES_ANY(update_indexes))
		index_new_version(rel, snapshot, cid, new,
						  PRESENCE_UPDATE_INDEXES_ONLY_SUMMARIZING(update_indexes));
	return true;
}

/*
 * Delete the entry found in `old`, which then holds the version deleted.
 * False when it was deleted meanwhile.
 */
static bool
delete_entry(Relation rel, Snapshot snapshot, CommandId cid,
			 const PresenceRowKey *key, TupleTableSlot *old)
{
	TM_FailureData tmfd;
	TM_Result	result;

	for (;;)
	{
		ItemPointerData tid = old->tts_tid;

		result = presence_tuple_delete(rel, &tid, cid, snapshot, &tmfd);
		if (result == TM_Ok)
			return true;
		if (!follow_changed_entry(rel, snapshot, cid, LockTupleExclusive,
								  result, key, old))
			return false;
	}
}

/*
 * Whether the caller's statement (cmd) may be replaced here: a plain
 * table, its primary key (opened into *index), and the privileges the
 * statement would check (the functions' owner's; it normally has them,
 * and else the statement reports the missing one).
 */
static bool
may_change_here(Relation rel, CmdType cmd, Relation *index)
{
	AclMode		needed = cmd == CMD_INSERT ? ACL_INSERT :
		ACL_SELECT | (cmd == CMD_DELETE ? ACL_DELETE : ACL_UPDATE);

	*index = NULL;
	if (!table_is_plain(rel, cmd) ||
		pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), needed) != ACLCHECK_OK)
		return false;
	*index = open_entry_key(rel);
	if (*index == NULL)
		return false;
	CheckCmdReplicaIdentity(rel, cmd);
	return true;
}

/*
 * Start the change as SPI starts a statement that changes rows: a new
 * snapshot (at READ COMMITTED) that sees this transaction's earlier
 * changes.  Returns the command id to change rows with.
 */
static CommandId
begin_change(void)
{
	PushActiveSnapshot(GetTransactionSnapshot());
	CommandCounterIncrement();
	UpdateActiveSnapshotCommandId();
	return GetCurrentCommandId(true);
}

/*
 * Change the key's entry: delete it (a leave) or apply `set` (a status
 * diff), recording the diff.  Returns 1 when it changed, 0 when there is
 * no such entry, and -1, having done nothing, when the caller must run its
 * statement instead (see the file's comment).  The caller is connected to
 * SPI and has locked the extension.
 */
int
presence_change_row(PresenceDiffKind kind, const PresenceRowKey *key,
					const PresenceRowSet *set)
{
	Relation	rel = table_open(presence_table(PRESENCE_ENTRIES),
								 RowExclusiveLock);
	bool		leave = kind == PRESENCE_DIFF_LEAVE;
	Relation	index;
	TupleTableSlot *old;
	TupleTableSlot *new = NULL;
	Snapshot	snapshot;
	CommandId	cid;
	PresenceEntry entry;
	bool		changed = false;

	if (!may_change_here(rel, leave ? CMD_DELETE : CMD_UPDATE, &index))
	{
		table_close(rel, NoLock);
		return -1;
	}
	cid = begin_change();
	snapshot = GetActiveSnapshot();

	old = table_slot_create(rel, NULL);
	if (find_entry(rel, index, snapshot, key, old))
	{
		if (leave)
		{
			changed = delete_entry(rel, snapshot, cid, key, old);
			if (changed)
				presence_entry_from_tuple(&entry,
										  ExecFetchSlotHeapTuple(old, false, NULL),
										  RelationGetDescr(rel));
		}
		else
		{
			new = MakeSingleTupleTableSlot(RelationGetDescr(rel),
										   &TTSOpsHeapTuple);
			changed = update_entry(rel, snapshot, cid, key, set, old, new,
								   &entry);
		}
	}
	if (changed)
		presence_record_diff(kind, &entry);

	if (new != NULL)
		ExecDropSingleTupleTableSlot(new);
	ExecDropSingleTupleTableSlot(old);
	PopActiveSnapshot();
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return changed ? 1 : 0;
}

/*
 * ON CONFLICT DO NOTHING found the key taken by the row at `tid`.  A
 * transaction snapshot that cannot see it (a row another transaction
 * committed since) gets a serialization failure, as the statement's.
 */
static void
check_conflict_visible(Relation rel, ItemPointer tid, Snapshot snapshot)
{
	TupleTableSlot *existing;
	bool		isnull;
	TransactionId xmin;

	if (!IsolationUsesXactSnapshot())
		return;
	existing = table_slot_create(rel, NULL);
	if (!table_tuple_fetch_row_version(rel, tid, SnapshotAny, existing))
		elog(ERROR, "presence: the conflicting entry was not found");
	if (!table_tuple_satisfies_snapshot(rel, existing, snapshot))
	{
		xmin = DatumGetTransactionId(slot_getsysattr(existing,
													 MinTransactionIdAttributeNumber,
													 &isnull));
		if (!TransactionIdIsCurrentTransactionId(xmin))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update")));
	}
	ExecDropSingleTupleTableSlot(existing);
}

/*
 * Insert the row in `slot` unless its key is taken, as INSERT ... ON
 * CONFLICT (topic, worker_id, fd) DO NOTHING does: a pre-check of the key
 * (waiting for an inserter in progress), then a speculative insertion
 * that is undone, and tried again, if a concurrent one took the key in
 * between.
 */
static bool
insert_unless_taken(Relation rel, Relation index, Snapshot snapshot,
					CommandId cid, TupleTableSlot *slot)
{
	EState	   *estate = new_executor_state(snapshot, cid);
	ResultRelInfo *result_rel = open_indexes(rel, true);
	List	   *arbiters = list_make1_oid(RelationGetRelid(index));
	TransactionId xid = GetCurrentTransactionId();
	bool		inserted = false;

	for (;;)
	{
		ItemPointerData conflict_tid;
		uint32		token;
		bool		conflict = false;

		if (!presence_check_index_constraints(result_rel, slot, estate,
											  &conflict_tid, arbiters))
		{
			check_conflict_visible(rel, &conflict_tid, snapshot);
			break;
		}
		token = SpeculativeInsertionLockAcquire(xid);
		table_tuple_insert_speculative(rel, slot, cid, 0, NULL, token);
		list_free(presence_insert_index_tuples(result_rel, slot, estate, true,
											   &conflict, arbiters, false));
		table_tuple_complete_speculative(rel, slot, token, !conflict);
		SpeculativeInsertionLockRelease(xid);
		if (!conflict)
		{
			inserted = true;
			break;
		}
	}
	ExecCloseIndices(result_rel);
	FreeExecutorState(estate);
	return inserted;
}

/*
 * Add the entry (presence_track's, its rules checked), recording its join
 * diff.  Returns 1 when added, 0 when its key exists, and -1, having done
 * nothing, when the caller must run its statement instead.  `meta` is the
 * jsonb datum of entry->meta (1.1).  The caller is connected to SPI and
 * has locked the extension.
 */
int
presence_insert_row(const PresenceEntry *entry, Datum meta)
{
	Relation	rel = table_open(presence_table(PRESENCE_ENTRIES),
								 RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	Relation	index;
	TupleTableSlot *slot;
	CommandId	cid;
	bool		inserted;

	if (!may_change_here(rel, CMD_INSERT, &index))
	{
		table_close(rel, NoLock);
		return -1;
	}
	cid = begin_change();

	slot = table_slot_create(rel, NULL);
	ExecClearTuple(slot);
	memset(slot->tts_isnull, false, desc->natts * sizeof(bool));
	slot->tts_values[0] = CStringGetTextDatum(entry->worker_id);
	slot->tts_values[1] = CStringGetTextDatum(entry->topic);
	slot->tts_values[2] = Int32GetDatum(entry->fd);
	slot->tts_values[3] = CStringGetTextDatum(entry->principal_id);
	slot->tts_values[4] = CStringGetTextDatum(entry->kind);
	slot->tts_values[5] = CStringGetTextDatum(entry->agent_id);
	slot->tts_values[6] = Int64GetDatum(entry->since_ts);
	slot->tts_values[7] = CStringGetTextDatum(entry->status_state);
	slot->tts_values[8] = CStringGetTextDatum(entry->status_note);
	slot->tts_values[9] = Int64GetDatum(entry->status_until);
	if (desc->natts > 10)
		slot->tts_values[10] = meta;
	ExecStoreVirtualTuple(slot);

	inserted = insert_unless_taken(rel, index, GetActiveSnapshot(), cid, slot);
	if (inserted)
		presence_record_diff(PRESENCE_DIFF_JOIN, entry);

	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return inserted ? 1 : 0;
}
