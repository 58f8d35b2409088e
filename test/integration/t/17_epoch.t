# The epoch: every diff and snapshot carries it, and it changes whenever the
# server's history of seqs may differ from what a listener saw.  A client
# that resumes from the last (epoch, seq) it saw must notice each of: an
# immediate shutdown with synchronous_commit = off (the commits whose diffs
# it saw may be lost, and their seqs given again), a crash restart (kill
# -9), DROP and CREATE EXTENSION (seqs start over), and promoting an
# asynchronous standby that had not received the last commits (which the
# test makes sure of, so their seqs are given again by the new primary).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node(conf => [ 'wal_writer_delay = 10s' ]);
my $topic = 'ep:room';
my $next_fd = 1;

# One join in the topic, committed, and its diff as the listener got it.
sub join_seen {
	my ($dbh, $l, $what) = @_;
	my $fd = $next_fd++;
	$dbh->selectrow_array(q{SELECT presence_track(?, ?, 'user:e', 'human', '', 'ep-w')}, undef, $topic, $fd);
	my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'join', topic => $topic, fd => $fd), 5);
	ok($r, "$what: the join's diff arrives") or return undef;
	return diff_of($r);
}

# What a client that resumes from (epoch, seq) concludes from the next diff.
sub resumes_silently {
	my ($last, $next) = @_;
	return $next->{epoch} eq $last->{epoch} && $next->{seq} == $last->{seq} + 1;
}

my $admin = connect_db();
my $l = PresenceTest::Listener->new(retry => 1);
$admin->selectrow_array(q{SELECT presence_worker_start('ep-w', '1 hour')});
$admin->do('SET synchronous_commit = off');    # the joins' commits only

# Every diff, the snapshot and presence_epoch() agree within a server run.
my @seen = map { join_seen($admin, $l, "before ($_)") } 1 .. 3;
my $epoch = $admin->selectrow_array('SELECT presence_epoch()');
like($epoch, qr/^[0-9a-f]{16}$/, "presence_epoch() is 16 hex digits ($epoch)");
is_deeply([ map { $_->{epoch} } @seen ], [ ($epoch) x 3 ], 'each diff carries presence_epoch()');
is($admin->selectrow_array('SELECT presence_snapshot(?)::json ->> ?', undef, $topic, 'epoch'), $epoch,
	'the snapshot carries it too');
is_deeply([ map { $_->{seq} } @seen ], [ 1, 2, 3 ], 'seqs 1, 2, 3');

# 1. Immediate shutdown.  With synchronous_commit = off and a 10 s WAL
# writer delay, the last commits' WAL is likely still in memory: lost.
my $last = $seen[-1];
node()->stop('immediate');
node()->start;
$admin = connect_retry();
$admin->do('SET synchronous_commit = off');
$l->connect;
my $after = join_seen($admin, $l, 'after an immediate shutdown');
isnt($after->{epoch}, $last->{epoch}, 'after an immediate shutdown the epoch is new');
is($after->{epoch}, $admin->selectrow_array('SELECT presence_epoch()'), '  and is presence_epoch()');
ok(!resumes_silently($last, $after), '  so a client resuming by seq sees the break');
diag(sprintf 'immediate shutdown: last seq seen %d, next seq given %d (%s)', $last->{seq}, $after->{seq},
	$after->{seq} <= $last->{seq} ? 'seqs given again: lost commits' : 'nothing lost');

# 2. A crash restart: the worker killed with -9; the postmaster stays, shared
# memory is made again and the WAL not yet written is lost.
$last = $after;
my $pid = worker_pid($admin);
kill 'KILL', $pid;
ok(wait_disconnected($admin, 10), 'the crash restart ends every session');
$admin = connect_retry();
$l->connect;
wait_worker_pid($admin, 10, $pid);
$after = join_seen($admin, $l, 'after a crash restart');
isnt($after->{epoch}, $last->{epoch}, 'after a crash restart the epoch is new');
ok(!resumes_silently($last, $after), '  so a client resuming by seq sees the break');

# 3. DROP and CREATE EXTENSION: seqs start over.
$last = $after;
$admin->do('DROP EXTENSION presence');
$admin->do('CREATE EXTENSION presence');
$admin->selectrow_array(q{SELECT presence_worker_start('ep-w', '1 hour')});
$after = join_seen($admin, $l, 'after DROP and CREATE EXTENSION');
is($after->{seq}, 1, 'the extension created again starts at seq 1');
isnt($after->{epoch}, $last->{epoch}, '  with a new epoch');
ok(!resumes_silently($last, $after), '  so a client resuming by seq sees the break');

# 4. An asynchronous standby promoted without the primary's last commits.
presence_node('primary', streaming => 1);
my $p = connect_db(cluster => 'primary');
my $pl = PresenceTest::Listener->new(cluster => 'primary');
$p->selectrow_array(q{SELECT presence_worker_start('ep-w', '1 hour')});
join_seen($p, $pl, 'primary') for 1 .. 2;
my $standby = presence_standby('standby', 'primary');
my $standby_db = connect_db(cluster => 'standby');
my $standby_epoch = $standby_db->selectrow_array('SELECT presence_epoch()');
like($standby_epoch, qr/^[0-9a-f]{16}$/, 'a standby answers presence_epoch() in recovery');
$standby_db->disconnect;
$standby->stop;    # it will not see what follows
my @lost = map { join_seen($p, $pl, "primary, not replicated ($_)") } 1 .. 2;
$last = $lost[-1];
node('primary')->stop('immediate');
$standby->start;
$standby->promote;
my $promoted = connect_retry(cluster => 'standby');
my $sl = PresenceTest::Listener->new(cluster => 'standby');
$after = join_seen($promoted, $sl, 'the promoted standby');
cmp_ok($after->{seq}, '<=', $last->{seq},
	"the promoted standby gives seq $after->{seq} again (the primary's last was $last->{seq})");
isnt($after->{epoch}, $last->{epoch}, "  under another epoch than the old primary's");
isnt($after->{epoch}, $standby_epoch, '  and than its own before promotion (a new timeline)');
is($after->{epoch}, $promoted->selectrow_array('SELECT presence_epoch()'), '  the one presence_epoch() gives');
ok(!resumes_silently($last, $after), '  so a client resuming by seq sees the break');

server_log_ok(kills => [$pid], starts => 3);
done_testing;
