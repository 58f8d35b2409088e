# SIGHUP changes the interval: ALTER SYSTEM SET presence.sweep_interval =
# '2s' + reload makes reset latencies grow (ticks 2 s apart), and back to
# 200 ms they shrink again.  The worker is not restarted for it.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use List::Util qw(max min);
use PresenceTest;

presence_node();

my $l = PresenceTest::Listener->new;
my $app = connect_db();
my $wid = $app->selectrow_array('SELECT presence_worker_start()');
$app->selectrow_array(q{SELECT presence_track('hup:room', ?, 'user:x')}, undef, $_) for 1 .. 3;
my $pid = wait_worker_pid($app, 10);    # the worker may not be up yet
my $off = log_offset();

# Statuses expiring in 3 consecutive seconds; returns their reset diffs.
sub measure {
	my ($label, $limit) = @_;
	my $base = now_s();
	for my $fd (1 .. 3) {
		$app->selectrow_array(q{SELECT presence_set_status('hup:room', ?, 'busy', '', ?)}, undef,
			$fd, $base + 1 + $fd);
	}
	my @got;
	for my $fd (1 .. 3) {
		my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'status', worker_id => $wid,
				fd => $fd, state => 'available'), $base + 1 + $fd + $limit + 1 - time);
		ok($r, "$label: status $fd reset") or next;
		my $lat = $r->{t} - ($base + 1 + $fd);
		diag(sprintf 'reset latency %s ms (%s)', ms($lat), $label);
		cmp_ok($lat, '>=', 0, "$label:   not before until");
		cmp_ok($lat, '<=', $limit, "$label:   within sweep_interval + 0.5 s ($limit s)");
		push @got, { t => $r->{t}, lat => $lat };
	}
	return @got;
}

my @before = measure('200ms', 0.7);

set_gucs($app, 'presence.sweep_interval' => '2s');
$l->pause(0.5);    # the tick already scheduled (<= 200 ms away) comes first
my @slow = measure('2s', 2.5);
my $max_slow = max(map { $_->{lat} } @slow) // 0;
cmp_ok($max_slow, '>', 0.7 + 0.2, 'at 2 s the largest reset latency exceeds the 200 ms target (it grew)');
# Ticks 2 s apart: resets at different ticks arrive ~2000 ms apart.
my @t = sort { $a <=> $b } map { $_->{t} } @slow;
my @gaps = grep { $_ > 0.1 } map { $t[$_] - $t[$_ - 1] } 1 .. $#t;
ok(@gaps >= 1, 'resets at 2 s fall on more than one tick') and do {
	diag(sprintf 'tick spacing at 2s: %s ms', join(', ', map { ms($_) } @gaps));
	ok((grep { abs($_ - 2.0) <= 0.15 } @gaps) == @gaps, 'ticks are 2 s apart (+/- 150 ms)');
};

reset_gucs($app, 'presence.sweep_interval');    # postgresql.conf's 200ms
$l->pause(2.3);    # the tick scheduled at 2 s comes first
my @after = measure('back to 200ms', 0.7);
is(worker_pid($app), $pid, 'the same worker process throughout (reloaded, not restarted)');
is_deeply([worker_log_problems(log_since($off))], [], 'no error in the log');
is($app->selectrow_array('SELECT presence_worker_stop()'), 3, 'cleanup');
server_log_ok();
done_testing;
