# Expiry without any manual call: a status with until_ts = now + k is
# reset by the worker within sweep_interval + 0.5 s after until passes,
# with a status diff in Tep's wire format.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use List::Util qw(max min sum);
use PresenceTest;

presence_node();

my $interval_ms = 200;
my $target = $interval_ms / 1000 + 0.5;

my $l = PresenceTest::Listener->new;
my $app = connect_db();
my $wid = $app->selectrow_array('SELECT presence_worker_start()');
ok($wid, "connection-bound worker $wid");

my @topics = map { "exp:room:$_" } 1 .. 3;
for my $t (@topics) {
	for my $fd (1 .. 3) {
		$app->selectrow_array('SELECT presence_track(?, ?, ?)', undef, $t, $fd, "user:$fd");
	}
}
my @joins = $l->collect(PresenceTest::Listener::match(kind => 'join', worker_id => $wid), 9, 3);
is(scalar @joins, 9, '9 join diffs');

# The wire format, checked once in full.
my $d = diff_of($joins[0]);
is($d->{_dtopic}, "presence:$d->{topic}", 'dtopic is presence:<topic>');
is($d->{_n}, length($d->{_dtopic}), 'N is the length of the dtopic');
my @keys = $d->{_json} =~ /"(\w+)":/g;
is_deeply(\@keys, \@PresenceTest::DIFF_KEYS, 'JSON keys in Tep order, then seq, worker_id and epoch');

# A status that never expires and one far in the future stay.
$app->do(q{SELECT presence_set_status('exp:room:1', 3, 'blocked', 'forever', 0)});
$app->do(q{SELECT presence_set_status('exp:room:2', 3, 'busy', 'later', ?)}, undef, now_s() + 3600);

# Samples: one status per second for 5 s, staggered over the topics, so the
# until passes at different points of the tick schedule.
my @samples;
my $base = now_s();
for my $k (1 .. 5) {
	my $fd = 1 + int(($k - 1) / 3);
	my $topic = $topics[($k - 1) % 3];
	my $until = $base + 1 + $k;
	$app->selectrow_array('SELECT presence_set_status(?, ?, ?, ?, ?)', undef,
		$topic, $fd, 'busy', "meeting $k", $until);
	push @samples, { topic => $topic, fd => $fd, until => $until };
}
# Two in the same second: both reset in one tick.
$app->selectrow_array('SELECT presence_set_status(?, ?, ?, ?, ?)', undef,
	'exp:room:3', 3, 'busy', 'pair', $base + 6);
$app->selectrow_array('SELECT presence_set_status(?, ?, ?, ?, ?)', undef,
	'exp:room:3', 2, 'blocked', 'pair', $base + 6);
push @samples, { topic => 'exp:room:3', fd => 3, until => $base + 6 },
  { topic => 'exp:room:3', fd => 2, until => $base + 6 };

my @sets = $l->collect(PresenceTest::Listener::match(kind => 'status', worker_id => $wid,
		state => qr/^(busy|blocked)$/), 9, 3);
is(scalar @sets, 9, 'status diffs of the set_status calls');

my (@lat, @resets);
for my $s (@samples) {
	my $got = $l->wait_for(PresenceTest::Listener::match(kind => 'status', worker_id => $wid,
			topic => $s->{topic}, fd => $s->{fd}, state => 'available'),
		$s->{until} + $target + 2 - time);
	ok($got, "status of $s->{topic}/$s->{fd} reset by the worker") or next;
	push @resets, $got;
	my $dd = diff_of($got);
	is_deeply([@$dd{qw(state note until_ts)}], ['available', '', 0],
		'  the diff says available, empty note, until_ts 0');
	my $lat = $got->{t} - $s->{until};
	push @lat, $lat;
	diag(sprintf 'reset latency %s ms', ms($lat));
	cmp_ok($lat, '>=', 0, '  not before until passed');
	cmp_ok($lat, '<=', $target, "  within sweep_interval + 0.5 s ($target s)");
}
diag(sprintf 'reset latency over %d samples: min %s ms, mean %s ms, max %s ms',
	scalar @lat, ms(min @lat), ms(sum(@lat) / @lat), ms(max @lat)) if @lat;

for my $s (@samples) {
	my $e = $app->selectrow_hashref('SELECT * FROM presence_find_entry(?, ?)', undef,
		$s->{topic}, $s->{fd});
	is("$e->{status_state}/$e->{status_until}", 'available/0', "entry $s->{topic}/$s->{fd} reset in the table");
}
my $forever = $app->selectrow_hashref(q{SELECT * FROM presence_find_entry('exp:room:1', 3)});
is($forever->{status_state}, 'blocked', 'a status with until_ts 0 is not reset');
my $later = $app->selectrow_hashref(q{SELECT * FROM presence_find_entry('exp:room:2', 3)});
is($later->{status_state}, 'busy', 'a status expiring later is not reset');

# seq: every listener sees 1, 2, 3 ... per topic, no gaps.
my %seqs;
for my $item (@joins, @sets, @resets) { my $x = diff_of($item); push @{ $seqs{$x->{topic}} }, $x->{seq} }
$l->pause(0.3);
for my $item ($l->drain) { my $x = diff_of($item); push @{ $seqs{$x->{topic}} }, $x->{seq} if $x->{worker_id} eq $wid }
for my $t (@topics) {
	my @s = sort { $a <=> $b } @{ $seqs{$t} // [] };
	is_deeply(\@s, [1 .. scalar @s], "$t: seq 1..N without gaps (N=" . scalar(@s) . ')');
}

is($app->selectrow_array('SELECT presence_worker_stop()'), 9, 'cleanup: worker_stop drops 9 entries');
server_log_ok();
done_testing;
